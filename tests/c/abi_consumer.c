/*
 * abi_consumer.c - a hyptrace consumer that follows docs/abi.md alone.
 *
 * Usage: abi_consumer SOCKET_PATH CPU EXPECTED_EVENTS
 *
 * Connects to the control socket, HELLO, GET_CPU, maps the CPU file, validates
 * the meta area, does one non-consuming seqlock copy of ring slot 0 (§4.3), then
 * consumes the CPU live (§6.1) and checks the test payloads
 * (u32 seq, u32 ~seq, filler byte i = (uint8_t)seq ^ (uint8_t)i, zero padded),
 * sequence gaps against reported lost_events, and timestamp monotonicity.
 * Prints "events=E lost=L next=N" on stdout; diagnostics go to stderr.
 *
 * How it reads docs/abi.md where the document leaves the consumer a choice:
 *
 *  - A page ends at commit, or at a padding record with time_delta 0 (§3.2): the read
 *    given back is then commit. Discarded events (padding with a time_delta) are skipped,
 *    their delta added to the running time; type_len 0 events take 4 + array[0] bytes.
 *  - reader.id and reader.read are compared with every GET_READER_PAGE answer,
 *    reader.lost_events only after a swap (§4.2); kept pages (status 1 or 2) must answer
 *    lost_events 0, the same id, and read equal to the argument sent.
 *  - A descriptor is a memfd if its /proc/self/fd link starts with "/memfd:" (§1); only
 *    memfds are required to show F_SEAL_SHRINK.
 *  - The extension's arrays are checked structurally: inside [144, meta_struct_len], not
 *    overlapping, aligned, meta_struct_len at least the formula, at most meta_page_size
 *    (§2.2, §7).
 *  - WAIT answering ready = 1 three times in a row with nothing new makes it poll (200 ms)
 *    anyway, so it never spins (§5.4); "retry later" (§4.3) is up to 100 attempts 1 ms
 *    apart, EBUSY up to 2 s.
 *  - On hangup it decodes the rest of its reader page if reader.id is still its own, and
 *    stops; it does not drain the ring post-mortem (§6.2), which would need first_seq-based
 *    loss accounting this program does not implement.
 *  - The slot-0 copy is validated by data_index[0].cnt alone (§4.3), not by reader_seq:
 *    it is checked for tearing, not for still being in the ring.
 *  - Payload sequence numbers are compared with first_seq[] only in a diagnostic.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- constants from docs/abi.md ------------------------------------------ */

#define REQ_MAGIC 0x51525448u /* "HTRQ" */
#define ANS_MAGIC 0x53525448u /* "HTRS" */
#define EXT_MAGIC 0x54505948u /* "HYPT" */

#define OP_HELLO 1u
#define OP_GET_CPU 2u
#define OP_GET_READER_PAGE 3u
#define OP_STATS 4u
#define OP_WAIT 5u

#define MAX_BODY 16384u
#define HDR_LEN 32u

/* meta area offsets */
#define M_META_PAGE_SIZE 0
#define M_META_STRUCT_LEN 4
#define M_SUBBUF_SIZE 8
#define M_NR_SUBBUFS 12
#define M_READER_LOST 16
#define M_READER_ID 24
#define M_READER_READ 28
#define M_FLAGS 32
#define M_ENTRIES 40
#define M_OVERRUN 48
#define M_READ 56
#define M_EXT_MAGIC 80
#define M_EXT_VERSION 84
#define M_NR_SLOTS 88
#define M_DATA_INDEX_OFF 92
#define M_DROPPED 96
#define M_SWAPS 104
#define M_HEAD_SLOT 112
#define M_TAIL_SLOT 116
#define M_TAIL_ID 120
#define M_SEQ_OFF 124
#define M_READER_SEQ 128
#define M_EXT_END 144

#define PAGE_HDR 16u
#define COMMIT_MASK 0x3fffffffu

/* ---- small helpers ------------------------------------------------------- */

static uint64_t g_events, g_lost, g_next;

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "abi_consumer: FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (so far: events=%" PRIu64 " lost=%" PRIu64 " next=%" PRIu64 ")\n",
		g_events, g_lost, g_next);
	exit(1);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "abi_consumer: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Atomic loads of mapped fields, each at its own width (§4). */
static inline uint32_t ld32(const unsigned char *p)
{
	return __atomic_load_n((const uint32_t *)(const void *)p, __ATOMIC_RELAXED);
}
static inline uint32_t ld32_acq(const unsigned char *p)
{
	return __atomic_load_n((const uint32_t *)(const void *)p, __ATOMIC_ACQUIRE);
}
static inline uint64_t ld64(const unsigned char *p)
{
	return __atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_RELAXED);
}
static inline uint64_t ld64_acq(const unsigned char *p)
{
	return __atomic_load_n((const uint64_t *)(const void *)p, __ATOMIC_ACQUIRE);
}

/* Plain reads from private (copied) buffers. */
static inline uint32_t rd32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}
static inline uint64_t rd64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* Copy n bytes (multiple of 4, 4-aligned) out of the mapping with relaxed loads. */
static void copy_words(unsigned char *dst, const unsigned char *src, uint32_t n)
{
	for (uint32_t i = 0; i < n; i += 4) {
		uint32_t w = ld32(src + i);
		memcpy(dst + i, &w, 4);
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- control socket ------------------------------------------------------ */

struct request {
	uint32_t magic, op, cpu, reserved0;
	uint64_t arg, reserved1;
};
_Static_assert(sizeof(struct request) == 32, "request is 32 bytes");

struct answer {
	uint32_t magic, op;
	int32_t status;
	uint32_t cpu, body_len, nr_fds;
	uint64_t reserved;
	unsigned char body[MAX_BODY];
	int fds[2];
	int nfds_received;
};

static int g_sock = -1;

enum { RPC_OK = 0, RPC_HANGUP = 1 };

/* Send a request and receive its answer.  Returns RPC_HANGUP if the producer
 * went away; dies on protocol violations. */
static int rpc(uint32_t op, uint32_t cpu, uint64_t arg, struct answer *a)
{
	struct request rq = { REQ_MAGIC, op, cpu, 0, arg, 0 };
	ssize_t n;

	for (;;) {
		n = send(g_sock, &rq, sizeof rq, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	if (n < 0) {
		if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)
			return RPC_HANGUP;
		die("send(op %u): %s", op, strerror(errno));
	}
	if ((size_t)n != sizeof rq)
		die("short send (%zd bytes) for op %u", n, op);

	unsigned char buf[HDR_LEN + MAX_BODY];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(2 * sizeof(int))];
	} cm;
	struct iovec iov = { buf, sizeof buf };
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof cm.buf;

	for (;;) {
		n = recvmsg(g_sock, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	if (n < 0) {
		if (errno == ECONNRESET || errno == EPIPE)
			return RPC_HANGUP;
		die("recvmsg(op %u): %s", op, strerror(errno));
	}
	if (n == 0)
		return RPC_HANGUP;

	/* Take ownership of any descriptors that arrived. */
	a->fds[0] = a->fds[1] = -1;
	a->nfds_received = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < cnt; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
				if (a->nfds_received < 2)
					a->fds[a->nfds_received] = fd;
				else
					close(fd);
				a->nfds_received++;
			}
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		die("op %u: ancillary data truncated (more than 2 descriptors?)", op);
	if (mh.msg_flags & MSG_TRUNC)
		die("op %u: answer larger than 32 + 16384 bytes", op);
	if ((size_t)n < HDR_LEN)
		die("op %u: answer of %zd bytes, shorter than the 32-byte header", op, n);

	a->magic = rd32(buf + 0);
	a->op = rd32(buf + 4);
	a->status = (int32_t)rd32(buf + 8);
	a->cpu = rd32(buf + 12);
	a->body_len = rd32(buf + 16);
	a->nr_fds = rd32(buf + 20);
	a->reserved = rd64(buf + 24);

	if (a->magic != ANS_MAGIC)
		die("op %u: answer magic 0x%08x, expected 0x%08x", op, a->magic, ANS_MAGIC);
	if (a->op != op)
		die("op %u: answer op %u", op, a->op);
	if (a->cpu != cpu)
		die("op %u: answer cpu %u, request cpu %u", op, a->cpu, cpu);
	if (a->body_len > MAX_BODY || (size_t)n != HDR_LEN + a->body_len)
		die("op %u: body_len %u but message of %zd bytes", op, a->body_len, n);
	if (a->nr_fds > 2 || (int)a->nr_fds != a->nfds_received)
		die("op %u: nr_fds %u but %d descriptors received", op, a->nr_fds,
		    a->nfds_received);
	if (a->status > 0)
		die("op %u: positive status %d", op, a->status);
	if (a->status < 0 && op != OP_HELLO && (a->body_len != 0 || a->nr_fds != 0))
		die("op %u: failed answer (status %d) carries body %u / fds %u", op, a->status,
		    a->body_len, a->nr_fds);
	memcpy(a->body, buf + HDR_LEN, a->body_len);
	return RPC_OK;
}

/* ---- event decoding (§3.2) ----------------------------------------------- */

struct dec {
	uint32_t off;  /* data offset of the next event to decode */
	uint64_t ts;   /* running time */
	int ts_valid;  /* page timestamp loaded */
	int ended;     /* page-closing padding seen */
};

/* Return 0 to continue, 1 to stop decoding after this event. */
typedef int (*event_fn)(void *ctx, uint32_t off, uint64_t ts, const unsigned char *payload,
			uint32_t len);

#define TS59 (UINT64_C(1) << 59)

/*
 * Decode events of a page's data[] from d->off up to commit (which the caller
 * has validated).  `data` is a private copy holding at least [d->off, commit).
 * Events starting at offsets >= hand_from are handed to fn.  Returns 0, or 1
 * when fn asked to stop.  Dies on malformed data (what: context for messages).
 */
static int decode(const char *what, const unsigned char *data, uint32_t commit, struct dec *d,
		  uint32_t hand_from, event_fn fn, void *ctx)
{
	while (!d->ended && d->off < commit) {
		uint32_t o = d->off;
		uint32_t room = commit - o;
		if (room < 4)
			die("%s: event header at %u crosses commit %u", what, o, commit);
		uint32_t h = rd32(data + o);
		uint32_t tl = h & 0x1f, td = h >> 5;
		uint32_t size = 0, plen = 0;
		const unsigned char *pl = NULL;
		int is_data = 0;

		if (tl >= 1 && tl <= 28) {
			size = 4 + 4 * tl;
			pl = data + o + 4;
			plen = 4 * tl;
			is_data = 1;
			d->ts += td;
		} else if (tl == 0) {
			if (room < 8)
				die("%s: type_len 0 event at %u: length word past commit %u", what, o,
				    commit);
			uint32_t a0 = rd32(data + o + 4);
			if (a0 < 4 || a0 > UINT32_MAX - 8)
				die("%s: type_len 0 event at %u: bad array[0] %u", what, o, a0);
			uint32_t r = (a0 + 3u) & ~3u;
			size = 4 + r;
			pl = data + o + 8;
			plen = r - 4;
			is_data = 1;
			d->ts += td;
		} else if (tl == 29) {
			if (td == 0) {
				/* Rest of the page is empty (reading 1 in the header). */
				d->ended = 1;
				d->off = commit;
				break;
			}
			if (room < 8)
				die("%s: discarded event at %u: length word past commit %u", what, o,
				    commit);
			uint32_t a0 = rd32(data + o + 4);
			if (a0 < 4 || (a0 & 3) || a0 > UINT32_MAX - 8)
				die("%s: discarded event at %u: bad length %u", what, o, a0);
			size = 4 + a0;
			d->ts += td; /* reading 2 in the header */
		} else if (tl == 30) {
			if (room < 8)
				die("%s: time extend at %u crosses commit %u", what, o, commit);
			uint64_t delta = ((uint64_t)rd32(data + o + 4) << 27) | td;
			size = 8;
			d->ts += delta;
		} else { /* 31: absolute timestamp */
			if (room < 8)
				die("%s: absolute timestamp at %u crosses commit %u", what, o, commit);
			uint64_t v = ((uint64_t)rd32(data + o + 4) << 27) | td;
			uint64_t nt = (d->ts & ~(TS59 - 1)) | v;
			if (nt < d->ts)
				nt += TS59;
			size = 8;
			d->ts = nt;
		}
		if (size > room)
			die("%s: event at %u (type_len %u, %u bytes) crosses commit %u", what, o, tl,
			    size, commit);
		if (o < hand_from && o + size > hand_from)
			die("%s: read offset %u falls inside the event at %u (%u bytes)", what,
			    hand_from, o, size);
		d->off = o + size;
		if (is_data && o >= hand_from) {
			if (fn(ctx, o, d->ts, pl, plen))
				return 1;
		}
	}
	return 0;
}

/* ---- payload check (test format) ----------------------------------------- */

/* Returns NULL if the payload is well-formed (and sets *seq), else a reason. */
static const char *check_payload(const unsigned char *p, uint32_t len, uint32_t *seq)
{
	if (len < 8)
		return "payload shorter than 8 bytes";
	uint32_t s = rd32(p), ns = rd32(p + 4);
	if (ns != ~s)
		return "second word is not ~seq";
	*seq = s;
	/* Bytes before len-3 are filler; the last 3 bytes are filler up to the
	 * (unrecorded) real length, then zero fill. */
	uint32_t tail_start = len >= 11 ? len - 3 : 8;
	for (uint32_t i = 8; i < tail_start; i++)
		if (p[i] != (uint8_t)((uint8_t)s ^ (uint8_t)i))
			return "filler byte mismatch";
	uint32_t cut = tail_start;
	while (cut < len && p[cut] == (uint8_t)((uint8_t)s ^ (uint8_t)cut))
		cut++;
	/* Any cut point works if filler bytes happen to be zero: require that the
	 * remainder after the longest filler prefix is all zero. */
	for (uint32_t i = cut; i < len; i++)
		if (p[i] != 0)
			return "padding byte after payload is not zero";
	return NULL;
}

/* ---- live consumption state ----------------------------------------------- */

struct live {
	int have_prev;
	uint64_t prev_seq;
	uint64_t pending_lost;
	int have_ts;
	uint64_t last_ts;
	uint64_t expected;
	int reached;
	uint64_t last_new_ms;
	uint32_t page_id;
};

static int live_event(void *vctx, uint32_t off, uint64_t ts, const unsigned char *pl, uint32_t len)
{
	struct live *L = vctx;
	uint32_t s;
	const char *why = check_payload(pl, len, &s);
	if (why)
		die("torn event on page %u at data offset %u (%u payload bytes): %s", L->page_id, off,
		    len, why);
	uint64_t seq = s;
	if (L->have_prev) {
		if (seq <= L->prev_seq)
			die("sequence did not increase: %" PRIu64 " after %" PRIu64 " (page %u off %u)",
			    seq, L->prev_seq, L->page_id, off);
		if (seq - L->prev_seq - 1 != L->pending_lost)
			die("gap of %" PRIu64 " between seq %" PRIu64 " and %" PRIu64
			    " but lost_events reported before it: %" PRIu64 " (page %u off %u)",
			    seq - L->prev_seq - 1, L->prev_seq, seq, L->pending_lost, L->page_id, off);
	} else if (L->pending_lost) {
		note("first event seq %" PRIu64 " preceded by %" PRIu64 " reported lost", seq,
		     L->pending_lost);
	}
	L->pending_lost = 0;
	if (L->have_ts && ts < L->last_ts)
		die("timestamp decreased: %" PRIu64 " after %" PRIu64 " (seq %" PRIu64 ", page %u off %u)",
		    ts, L->last_ts, seq, L->page_id, off);
	L->have_ts = 1;
	L->last_ts = ts;
	L->have_prev = 1;
	L->prev_seq = seq;
	g_events++;
	g_next = seq + 1;
	L->last_new_ms = now_ms();
	if (L->expected > 0 && seq == L->expected - 1) {
		L->reached = 1;
		return 1;
	}
	return 0;
}

/* ---- slot copy check ------------------------------------------------------ */

struct copyctx {
	unsigned n;
	uint64_t first_seq_payload;
	uint64_t prev;
	uint64_t last_ts;
	uint32_t id;
};

static int copy_event(void *vctx, uint32_t off, uint64_t ts, const unsigned char *pl, uint32_t len)
{
	struct copyctx *c = vctx;
	uint32_t s;
	const char *why = check_payload(pl, len, &s);
	if (why)
		die("validated copy of ring slot 0 (id %u): torn event at %u: %s", c->id, off, why);
	if (c->n == 0) {
		c->first_seq_payload = s;
	} else {
		if ((uint64_t)s != c->prev + 1)
			die("validated copy of ring slot 0 (id %u): seq %u follows %" PRIu64
			    " on one page (events on a page must be consecutive)", c->id, s, c->prev);
		if (ts < c->last_ts)
			die("validated copy of ring slot 0 (id %u): timestamp decreased at %u", c->id,
			    off);
	}
	c->prev = s;
	c->last_ts = ts;
	c->n++;
	return 0;
}

/* ---- main ----------------------------------------------------------------- */

static const char *fd_link(int fd, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, buf, len - 1);
	if (n < 0)
		return NULL;
	buf[n] = 0;
	return buf;
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-') {
		fprintf(stderr, "abi_consumer: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s SOCKET_PATH CPU EXPECTED_EVENTS\n", argv[0]);
		return 2;
	}
	const char *sock_path = argv[1];
	uint64_t cpu64 = parse_u64(argv[2], "CPU");
	uint64_t expected = parse_u64(argv[3], "EXPECTED_EVENTS");
	if (cpu64 > UINT32_MAX) {
		fprintf(stderr, "abi_consumer: CPU out of range\n");
		return 2;
	}
	uint32_t cpu = (uint32_t)cpu64;
	static struct answer ans;

	/* 1. connect + HELLO ------------------------------------------------ */
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	if (strlen(sock_path) >= sizeof sa.sun_path)
		die("socket path too long");
	strcpy(sa.sun_path, sock_path);
	g_sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (g_sock < 0)
		die("socket: %s", strerror(errno));
	if (connect(g_sock, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("connect %s: %s", sock_path, strerror(errno));

	if (rpc(OP_HELLO, 0, 1, &ans) != RPC_OK)
		die("producer hung up during HELLO");
	if (ans.status == -EPROTO && ans.body_len >= 4)
		die("HELLO: -EPROTO, producer protocol version %u (we speak 1)", rd32(ans.body));
	if (ans.status != 0)
		die("HELLO: status %d", ans.status);
	if (ans.body_len != 48)
		die("HELLO: body_len %u, expected 48", ans.body_len);
	if (ans.nr_fds != 0)
		die("HELLO: %u descriptors attached, expected none", ans.nr_fds);
	uint32_t h_version = rd32(ans.body + 0);
	uint32_t h_nr_cpus = rd32(ans.body + 4);
	uint32_t h_mode = rd32(ans.body + 8);
	uint32_t h_subbuf_size = rd32(ans.body + 12);
	uint32_t h_nr_subbufs = rd32(ans.body + 16);
	uint32_t h_meta_page_size = rd32(ans.body + 20);
	uint64_t h_file_size = rd64(ans.body + 24);
	uint64_t h_formats_len = rd64(ans.body + 32);
	if (h_version != 1)
		die("HELLO: producer version %u, expected 1", h_version);
	if (h_mode > 1)
		die("HELLO: mode %u (0 overwrite, 1 drop)", h_mode);
	if (h_nr_cpus == 0)
		die("HELLO: nr_cpus 0");
	if (h_subbuf_size <= PAGE_HDR || (h_subbuf_size & (h_subbuf_size - 1)) ||
	    h_subbuf_size - PAGE_HDR > COMMIT_MASK + 1u)
		die("HELLO: subbuf_size %u is not a usable power of two", h_subbuf_size);
	if (h_nr_subbufs < 3)
		die("HELLO: nr_subbufs %u < 3", h_nr_subbufs);
	if (h_meta_page_size == 0 || h_meta_page_size % 4096)
		die("HELLO: meta_page_size %u is not a non-zero multiple of 4096", h_meta_page_size);
	if (h_meta_page_size < M_EXT_END)
		die("HELLO: meta_page_size %u too small for the meta area", h_meta_page_size);
	if (h_file_size != (uint64_t)h_meta_page_size + (uint64_t)h_subbuf_size * h_nr_subbufs)
		die("HELLO: cpu_file_size %" PRIu64 " != meta_page_size %u + subbuf_size %u * nr_subbufs %u",
		    h_file_size, h_meta_page_size, h_subbuf_size, h_nr_subbufs);
	if (h_file_size > SIZE_MAX)
		die("HELLO: cpu_file_size too large");
	if (cpu >= h_nr_cpus)
		die("CPU %u out of range: producer has %u CPUs", cpu, h_nr_cpus);
	note("HELLO: version %u, %u cpus, mode %s, subbuf_size %u, nr_subbufs %u, meta_page_size %u, "
	     "file %" PRIu64 ", formats_len %" PRIu64,
	     h_version, h_nr_cpus, h_mode ? "drop" : "overwrite", h_subbuf_size, h_nr_subbufs,
	     h_meta_page_size, h_file_size, h_formats_len);

	/* 2. GET_CPU -------------------------------------------------------- */
	if (rpc(OP_GET_CPU, cpu, 0, &ans) != RPC_OK)
		die("producer hung up during GET_CPU");
	if (ans.status != 0)
		die("GET_CPU(%u): status %d", cpu, ans.status);
	if (ans.body_len != 16)
		die("GET_CPU: body_len %u, expected 16", ans.body_len);
	if (ans.nr_fds != 2)
		die("GET_CPU: %u descriptors, expected 2", ans.nr_fds);
	uint64_t c_file_size = rd64(ans.body);
	int file_fd = ans.fds[0], efd = ans.fds[1];
	if (c_file_size != h_file_size)
		die("GET_CPU: file_size %" PRIu64 " != HELLO cpu_file_size %" PRIu64, c_file_size,
		    h_file_size);
	size_t size = (size_t)c_file_size;

	struct stat st;
	if (fstat(file_fd, &st) < 0)
		die("fstat: %s", strerror(errno));
	if (st.st_size < 0 || (uint64_t)st.st_size < c_file_size)
		die("CPU file is %lld bytes, smaller than %" PRIu64, (long long)st.st_size,
		    c_file_size);
	char lbuf[PATH_MAX];
	const char *link = fd_link(file_fd, lbuf, sizeof lbuf);
	int is_memfd = link && strncmp(link, "/memfd:", 7) == 0;
	if (is_memfd) {
		int seals = fcntl(file_fd, F_GET_SEALS);
		if (seals < 0)
			die("F_GET_SEALS on memfd: %s", strerror(errno));
		if (!(seals & F_SEAL_SHRINK))
			die("memfd seals 0x%x lack F_SEAL_SHRINK", seals);
		if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)) !=
		    (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL))
			note("warning: memfd seals 0x%x differ from the documented set", seals);
	} else {
		note("CPU file is not a memfd (%s): seal check skipped", link ? link : "?");
	}
	int fl = fcntl(file_fd, F_GETFL);
	if (fl >= 0 && (fl & O_ACCMODE) != O_RDONLY)
		note("warning: CPU file descriptor is not opened read-only (flags 0x%x)", fl);
	link = fd_link(efd, lbuf, sizeof lbuf);
	if (!link || !strstr(link, "eventfd"))
		die("second GET_CPU descriptor is not an eventfd (%s)", link ? link : "?");

	const unsigned char *base = mmap(NULL, size, PROT_READ, MAP_SHARED, file_fd, 0);
	if (base == MAP_FAILED)
		die("mmap of %zu bytes: %s", size, strerror(errno));

	/* 3. meta area ------------------------------------------------------ */
	uint32_t meta_page_size = ld32(base + M_META_PAGE_SIZE);
	uint32_t meta_struct_len = ld32(base + M_META_STRUCT_LEN);
	uint32_t subbuf_size = ld32(base + M_SUBBUF_SIZE);
	uint32_t nr_subbufs = ld32(base + M_NR_SUBBUFS);
	uint64_t flags = ld64(base + M_FLAGS);
	if (meta_page_size != h_meta_page_size || subbuf_size != h_subbuf_size ||
	    nr_subbufs != h_nr_subbufs)
		die("meta base (meta_page_size %u subbuf_size %u nr_subbufs %u) disagrees with HELLO "
		    "(%u %u %u)",
		    meta_page_size, subbuf_size, nr_subbufs, h_meta_page_size, h_subbuf_size,
		    h_nr_subbufs);
	if (!(flags & 1))
		die("meta flags 0x%" PRIx64 ": hyptrace extension bit not set", flags);
	if (flags & ~UINT64_C(1))
		note("warning: meta flags 0x%" PRIx64 " has undocumented bits", flags);
	uint32_t ext_magic = ld32(base + M_EXT_MAGIC);
	uint32_t ext_version = ld32(base + M_EXT_VERSION);
	if (ext_magic != EXT_MAGIC)
		die("extension magic 0x%08x, expected 0x%08x", ext_magic, EXT_MAGIC);
	if (ext_version != 2)
		die("extension version %u, expected 2", ext_version);
	uint32_t nr_slots = ld32(base + M_NR_SLOTS);
	uint32_t di_off = ld32(base + M_DATA_INDEX_OFF);
	uint32_t seq_off = ld32(base + M_SEQ_OFF);
	if (nr_slots != nr_subbufs - 1)
		die("nr_slots %u != nr_subbufs - 1 (%u)", nr_slots, nr_subbufs - 1);
	uint64_t di_end = (uint64_t)di_off + 8u * (uint64_t)nr_slots;
	uint64_t seq_end = (uint64_t)seq_off + 8u * (uint64_t)nr_subbufs;
	uint64_t formula = (uint64_t)di_off + 8u * (uint64_t)nr_slots + 8u * (uint64_t)nr_subbufs;
	if (di_off < M_EXT_END || di_off % 8)
		die("data_index_offset %u (must be >= 144 and 8-aligned)", di_off);
	if (di_off != M_EXT_END)
		note("note: data_index_offset %u (version 2 documents 144)", di_off);
	if (seq_off < M_EXT_END || seq_off % 8)
		die("seq_offset %u (must be >= 144 and 8-aligned)", seq_off);
	if (!(seq_off >= di_end || seq_end <= di_off))
		die("first_seq[] [%u, %" PRIu64 ") overlaps data_index[] [%u, %" PRIu64 ")", seq_off,
		    seq_end, di_off, di_end);
	if (seq_off != di_end)
		note("note: seq_offset %u does not directly follow data_index[] (ends at %" PRIu64 ")",
		     seq_off, di_end);
	if ((uint64_t)meta_struct_len < formula)
		die("meta_struct_len %u < data_index_offset + 8*nr_slots + 8*nr_subbufs = %" PRIu64,
		    meta_struct_len, formula);
	if (meta_struct_len != formula)
		note("note: meta_struct_len %u larger than the version-1 formula %" PRIu64,
		     meta_struct_len, formula);
	if (di_end > meta_struct_len || seq_end > meta_struct_len)
		die("data_index[] or first_seq[] extends past meta_struct_len %u", meta_struct_len);
	if (meta_struct_len > meta_page_size)
		die("meta_struct_len %u > meta_page_size %u", meta_struct_len, meta_page_size);
	for (uint32_t o = meta_struct_len; o < meta_page_size; o++)
		if (__atomic_load_n(base + o, __ATOMIC_RELAXED) != 0)
			die("meta byte %u (past meta_struct_len %u) is not zero", o, meta_struct_len);
	{
		uint32_t rid = ld32(base + M_READER_ID), rrd = ld32(base + M_READER_READ);
		uint32_t hs = ld32(base + M_HEAD_SLOT), ts = ld32(base + M_TAIL_SLOT);
		uint32_t tid = ld32(base + M_TAIL_ID);
		if (rid >= nr_subbufs)
			die("reader.id %u >= nr_subbufs", rid);
		if (rrd > subbuf_size - PAGE_HDR)
			die("reader.read %u larger than the page data", rrd);
		if (hs >= nr_slots || ts >= nr_slots || tid >= nr_subbufs)
			die("head_slot %u / tail_slot %u / tail_id %u out of range", hs, ts, tid);
		note("meta: reader.id %u reader.read %u head_slot %u tail_slot %u tail_id %u swaps %" PRIu64
		     " entries %" PRIu64 " overrun %" PRIu64 " read %" PRIu64 " dropped %" PRIu64,
		     rid, rrd, hs, ts, tid, ld64(base + M_SWAPS), ld64(base + M_ENTRIES),
		     ld64(base + M_OVERRUN), ld64(base + M_READ), ld64(base + M_DROPPED));
	}
	const unsigned char *data_index = base + di_off;
	const unsigned char *first_seq = base + seq_off;
	const uint32_t room = subbuf_size - PAGE_HDR;
#define PAGE(id) (base + (size_t)meta_page_size + (size_t)(id) * (size_t)subbuf_size)

	unsigned char *copybuf = malloc(subbuf_size);
	if (!copybuf)
		die("out of memory");

	/* 4. non-consuming validated copy of ring slot 0 (§4.3) ------------- */
	{
		int validated = 0;
		unsigned attempts = 0;
		uint32_t c1 = 0, id = 0, commit = 0;
		uint64_t first = 0, pts = 0;
		const unsigned char *cntp = data_index + 0 * 8 + 4;
		const unsigned char *idp = data_index + 0 * 8 + 0;
		while (attempts < 100 && !validated) {
			attempts++;
			c1 = ld32_acq(cntp);
			if (c1 & 1) {
				sleep_ms(1);
				continue;
			}
			id = ld32(idp);
			if (id >= nr_subbufs)
				die("data_index[0].id %u >= nr_subbufs %u", id, nr_subbufs);
			first = ld64(first_seq + 8u * id);
			const unsigned char *pg = PAGE(id);
			uint64_t rc = ld64_acq(pg + 8);
			commit = (uint32_t)(rc & COMMIT_MASK);
			pts = ld64(pg);
			int sane = commit <= room && (commit & 3) == 0;
			if (sane)
				copy_words(copybuf + PAGE_HDR, pg + PAGE_HDR, commit);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			uint32_t c2 = ld32(cntp);
			if (c2 != c1) {
				sleep_ms(1);
				continue;
			}
			if (!sane)
				die("validated copy of slot 0 (id %u): commit %u invalid (room %u)", id,
				    commit, room);
			validated = 1;
		}
		if (validated) {
			struct dec d = { 0, pts, 1, 0 };
			struct copyctx cc;
			memset(&cc, 0, sizeof cc);
			cc.id = id;
			decode("slot 0 copy", copybuf + PAGE_HDR, commit, &d, 0, copy_event, &cc);
			note("slot 0 copy: validated after %u attempt(s): id %u cnt %u commit %u, %u events, "
			     "first_seq %" PRIu64 "%s",
			     attempts, id, c1, commit, cc.n, first,
			     cc.n == 0                        ? ""
			     : cc.first_seq_payload == first ? " (matches first payload seq)"
							      : " (differs from first payload seq)");
			if (cc.n && cc.first_seq_payload != first)
				note("slot 0 copy: first payload seq %" PRIu64 " vs first_seq %" PRIu64
				     " (informational)",
				     cc.first_seq_payload, first);
		} else {
			note("slot 0 copy: NOT validated after %u attempts (cnt odd or changing)",
			     attempts);
		}
	}

	/* 5. consume (§6.1) ----------------------------------------------------- */
	struct live L;
	memset(&L, 0, sizeof L);
	L.expected = expected;
	L.last_new_ms = now_ms();
	uint32_t rdpos = ld32(base + M_READER_READ);
	uint32_t cur_id = ld32(base + M_READER_ID);
	struct dec d = { 0, 0, 0, 0 };
	int hangup = 0;
	unsigned ready_spins = 0;

	for (;;) {
		if (L.reached)
			break;
		if (now_ms() - L.last_new_ms >= 2000) {
			note("no new event for 2 s: stopping");
			break;
		}
		/* GET_READER_PAGE(cpu, read), retrying on EBUSY. */
		int r;
		uint64_t busy_since = 0;
		for (;;) {
			r = rpc(OP_GET_READER_PAGE, cpu, rdpos, &ans);
			if (r != RPC_OK || ans.status != -EBUSY)
				break;
			if (!busy_since)
				busy_since = now_ms();
			else if (now_ms() - busy_since > 2000)
				die("GET_READER_PAGE: EBUSY for more than 2 s (another consumer?)");
			sleep_ms(1);
		}
		if (r == RPC_HANGUP) {
			hangup = 1;
			break;
		}
		if (ans.status != 0)
			die("GET_READER_PAGE(cpu %u, read %u): status %d", cpu, rdpos, ans.status);
		if (ans.body_len != 24 || ans.nr_fds != 0)
			die("GET_READER_PAGE: body_len %u nr_fds %u, expected 24/0", ans.body_len,
			    ans.nr_fds);
		uint32_t id = rd32(ans.body + 0);
		uint32_t rd = rd32(ans.body + 4);
		uint64_t lost = rd64(ans.body + 8);
		uint32_t status = rd32(ans.body + 16);
		if (id >= nr_subbufs)
			die("GET_READER_PAGE: id %u >= nr_subbufs %u", id, nr_subbufs);
		if (status > 2)
			die("GET_READER_PAGE: unknown status %u", status);
		if (status == 0 && rd != 0)
			die("GET_READER_PAGE: swapped (status 0) but read %u != 0", rd);
		if (status != 0 && id != cur_id)
			die("GET_READER_PAGE: status %u (kept) but id %u != current reader page %u", status,
			    id, cur_id);
		if (status != 0 && lost != 0)
			die("GET_READER_PAGE: status %u (kept) but lost_events %" PRIu64, status, lost);
		if (status != 0 && rd != rdpos)
			die("GET_READER_PAGE: kept page but read %u != %u sent", rd, rdpos);
		if (rd > room)
			die("GET_READER_PAGE: read %u > page data room %u", rd, room);
		/* §4.2: the same values are in the meta area's reader fields. */
		{
			uint32_t mid = ld32(base + M_READER_ID), mrd = ld32(base + M_READER_READ);
			if (mid != id || mrd != rd)
				die("meta reader.id/read %u/%u disagree with GET_READER_PAGE answer %u/%u",
				    mid, mrd, id, rd);
			if (status == 0) {
				uint64_t mlost = ld64(base + M_READER_LOST);
				if (mlost != lost)
					die("meta reader.lost_events %" PRIu64
					    " disagrees with answer %" PRIu64,
					    mlost, lost);
			}
		}
		if (lost > 0) {
			L.pending_lost += lost;
			g_lost += lost;
		}
		if (status == 0 || id != cur_id) {
			memset(&d, 0, sizeof d);
			cur_id = id;
		}
		L.page_id = id;

		const unsigned char *pg = PAGE(id);
		uint32_t commit = (uint32_t)(ld64_acq(pg + 8) & COMMIT_MASK);
		if (commit > room || (commit & 3))
			die("page %u: commit %u invalid (room %u)", id, commit, room);
		if (rd > commit)
			die("page %u: read %u > commit %u", id, rd, commit);
		if (d.off > commit && !d.ended)
			die("page %u: commit went back from %u to %u", id, d.off, commit);
		if (!d.ts_valid && commit > 0) {
			d.ts = ld64(pg); /* after the acquire load of commit */
			d.ts_valid = 1;
		}
		if (!d.ended && d.off < commit) {
			copy_words(copybuf + PAGE_HDR + d.off, pg + PAGE_HDR + d.off, commit - d.off);
			decode("reader page", copybuf + PAGE_HDR, commit, &d, rd, live_event, &L);
		}
		if (L.reached)
			break;
		if (d.off < rd && !(d.ended))
			die("page %u: decoded up to %u, below read %u", id, d.off, rd);
		uint32_t newread = d.off > rd ? d.off : rd;
		int moved = newread != rd;
		rdpos = newread;

		if (status != 0 && !moved) {
			/* Nothing new: WAIT(cpu, 1), then poll doorbell + socket. */
			if (rpc(OP_WAIT, cpu, 1, &ans) != RPC_OK) {
				hangup = 1;
				break;
			}
			if (ans.status != 0)
				die("WAIT: status %d", ans.status);
			if (ans.body_len != 8 || ans.nr_fds != 0)
				die("WAIT: body_len %u nr_fds %u, expected 8/0", ans.body_len, ans.nr_fds);
			uint32_t ready = rd32(ans.body);
			if (ready > 1)
				die("WAIT: ready %u", ready);
			if (ready && ++ready_spins < 3)
				continue;
			ready_spins = 0;
			struct pollfd pfd[2] = {
				{ efd, POLLIN, 0 },
				{ g_sock, POLLIN | POLLRDHUP, 0 },
			};
			int pr = poll(pfd, 2, 200);
			if (pr < 0 && errno != EINTR)
				die("poll: %s", strerror(errno));
			if (pr > 0) {
				if (pfd[0].revents & (POLLERR | POLLNVAL))
					die("doorbell eventfd poll error 0x%x", pfd[0].revents);
				if (pfd[0].revents & POLLIN) {
					uint64_t v;
					ssize_t n = read(efd, &v, sizeof v);
					if (n != (ssize_t)sizeof v && !(n < 0 && errno == EAGAIN))
						die("reading the doorbell eventfd: %s",
						    n < 0 ? strerror(errno) : "short read");
				}
				if (pfd[1].revents & (POLLHUP | POLLRDHUP | POLLERR)) {
					hangup = 1;
					break;
				}
				if (pfd[1].revents & POLLIN) {
					char b;
					ssize_t n = recv(g_sock, &b, 1, MSG_PEEK | MSG_DONTWAIT);
					if (n == 0 || (n < 0 && errno == ECONNRESET)) {
						hangup = 1;
						break;
					}
					if (n > 0)
						die("unsolicited message on the control socket");
				}
			}
		} else {
			ready_spins = 0;
		}
	}

	if (hangup) {
		note("producer hung up");
		/* §6.2, reader page only: read the rest of our page if it is still ours. */
		if (!L.reached && ld32(base + M_READER_ID) == cur_id) {
			const unsigned char *pg = PAGE(cur_id);
			uint32_t commit = (uint32_t)(ld64_acq(pg + 8) & COMMIT_MASK);
			if (commit > room || (commit & 3))
				die("page %u: commit %u invalid (room %u)", cur_id, commit, room);
			if (commit >= rdpos && commit >= d.off && !d.ended) {
				if (!d.ts_valid && commit > 0) {
					d.ts = ld64(pg);
					d.ts_valid = 1;
				}
				if (d.off < commit) {
					copy_words(copybuf + PAGE_HDR + d.off, pg + PAGE_HDR + d.off,
						   commit - d.off);
					L.page_id = cur_id;
					decode("reader page (after hangup)", copybuf + PAGE_HDR, commit, &d,
					       rdpos, live_event, &L);
				}
			}
		}
	}

	printf("events=%" PRIu64 " lost=%" PRIu64 " next=%" PRIu64 "\n", g_events, g_lost, g_next);
	fflush(stdout);
	free(copybuf);
	munmap((void *)base, size);
	close(file_fd);
	close(efd);
	close(g_sock);
	return 0;
}
