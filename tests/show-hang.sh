#!/usr/bin/env bash
# Shows what the processes of process group GROUP and their descendants are doing, for a part of
# tests/run-all.sh that ran past its time: the process tree; each thread's state, kernel wait
# channel and kernel stack; and, where gdb is installed, the user-space backtrace of every thread
# of each program built from this repository.
#
#   bash tests/show-hang.sh GROUP
set -uo pipefail
group=$1
# The group's processes, then their children, until no more are found.
pids=$(ps -e -o pid=,ppid=,pgid= | awk -v group="$group" '
    { parent[$1] = $2; if ($3 == group) found[$1] = 1 }
    END {
        do {
            more = 0
            for (pid in parent) if (!(pid in found) && (parent[pid] in found)) { found[pid] = 1; more = 1 }
        } while (more)
        for (pid in found) print pid
    }')

echo "== processes of the part still running"
# shellcheck disable=SC2086 # one argument per pid
ps -o pid,ppid,stat,etimes,wchan:32,args --forest -p "$(echo $pids | tr ' ' ,)"

for pid in $pids; do
    for task in /proc/"$pid"/task/*; do
        [ -d "$task" ] || continue
        echo "== $pid/${task##*/} $(cat "$task/comm" 2>/dev/null) state $(awk '{print $3}' "$task/stat" 2>/dev/null) wchan $(cat "$task/wchan" 2>/dev/null)"
        sed 's/^/     /' "$task/stack" 2>/dev/null
    done
done

command -v gdb >/dev/null 2>&1 || exit 0
for pid in $pids; do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    case $exe in
        */target/*)
            echo "== backtraces of $pid ($exe)"
            timeout 60 gdb -p "$pid" -batch -nx -ex "set pagination off" -ex "thread apply all bt 30" 2>&1 |
                grep -E '^(Thread|#)' | head -400
            ;;
    esac
done
