/*
 * The PostgreSQL door's native data path (see protocols/postgres/native.ts for the JavaScript
 * side, and README.md beside this file).
 *
 * One thread per process runs every live session's sockets on epoll. JavaScript makes each
 * socket it accepted (the client, after its SSLRequest) or connected (the target, after the
 * target's 'S' or in plaintext) an *endpoint*: a descriptor, with TLS as a server or as a
 * client, using the OpenSSL inside the node binary. During the login an endpoint is a stream
 * for JavaScript: what it reads goes up as `data` events, what JavaScript writes goes out.
 * The door's login, decision, refusals and audit stay in JavaScript (session.ts).
 *
 * Once both legs are logged in, `splice` joins a client endpoint and a target endpoint into a
 * relay, which does on this thread what protocols/postgres/relay.ts does on Node's streams:
 * both directions framed at message boundaries, the client's Query and Parse captured for the
 * statement audit (the first `limit` bytes of the body, handed up raw), Terminate noticed,
 * requests counted against their ReadyForQuery (a teardown cancels a busy target), bytes
 * counted, backpressure (a side is read only while the other has taken everything), warnings
 * and the goodbye only at a message boundary of the target's stream, and the teardown timing:
 * the goodbye waits at most 250 ms for a boundary; the client then has 100 ms to read it
 * before its socket closes; the target's Terminate follows 250 ms after the client's close.
 *
 * Threads: an endpoint belongs to the JavaScript thread from `open` until `splice`: its TLS
 * handshake and its login's reads and writes run there, on a libuv poll handle in Node's own
 * loop, so a login's messages never wait for another thread to wake (each crossing cost a
 * connect 35-64 µs). `splice` hands both legs to the loop thread, which owns every relay from
 * then on; JavaScript only queues commands for it (under `lock`) and wakes it (eventfd). A
 * pointer moves with its command, under the lock, so one thread at a time touches an
 * endpoint. Events go up in batches through one threadsafe function, from either thread.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <node_api.h>
#include <poll.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* One read: a TLS record's plaintext (16 KiB) fits, and a lean record's inner plaintext
 * (content, type, padding: at most 16 KiB + 240 bytes) opens in place. */
#define BUF (16384 + 1024)
#define MAX_CLIENT_MESSAGE (64u * 1024 * 1024)
#define MAX_SERVER_MESSAGE (1024u * 1024 * 1024 - 1)
#define MS 1000000LL
#define BOUNDARY_WAIT_NS (250 * MS)
#define LINGER_NS (100 * MS)
#define UPSTREAM_GRACE_NS (250 * MS)
#define BYTES_EVERY_NS (1000 * MS)
/* Statements wait at most this long (or STATEMENT_BATCH bytes) to go up with other events. */
#define STATEMENT_DELAY_NS (2 * MS)
#define STATEMENT_BATCH 32768
/* Login: bytes gone up as data that JavaScript has not taken (ack) before the socket is no longer read.
 * Exported as `loginWindow`: JavaScript acks once half of it came up (NativeEndpoint._read). */
#define LOGIN_WINDOW (256u * 1024)
/* A relay's statements gone up and not yet audited (audited) before its client is no longer read. */
#define MAX_UNAUDITED 1024u

enum role { ROLE_PLAIN, ROLE_SERVER, ROLE_CLIENT };
enum state { ST_HANDSHAKE, ST_OPEN, ST_RELAY, ST_LINGER };
/* What a deadline on an endpoint does when it passes. */
enum timer { T_NONE, T_BOUNDARY, T_CLOSE, T_TERMINATE };

/* Events, as the first element of each array JavaScript receives. */
enum event { EV_READY = 1, EV_DATA, EV_CLOSED, EV_STOPPED, EV_STATEMENT, EV_BYTES, EV_BROKE, EV_END, EV_COUNTS, EV_HELD, EV_SESSION };
/* How a relay ended (EV_END). */
enum how { END_CLIENT_CLOSED, END_TARGET_CLOSED, END_TARGET_BROKE, END_TEARDOWN, END_VIOLATION };

enum cmd_kind { C_WRITE, C_STOP, C_END, C_CLOSE, C_SPLICE, C_NOTICE, C_TEARDOWN, C_SHUTDOWN, C_ACK, C_AUDITED, C_VERDICT };

typedef struct framer {
  uint8_t head[5];
  int head_len;
  uint32_t left;      /* body bytes of the current message still to come */
  uint32_t body;      /* its body length */
  uint8_t type;
  uint8_t *cap;       /* the first bytes of a captured message's body */
  uint32_t cap_len, cap_want;
} framer;

struct ep;
typedef struct relay {
  struct ep *client, *target;
  framer up, down;    /* client to target; target to client */
  uint32_t limit;     /* bytes of a statement's body kept for the audit */
  int capture, awaiting, terminated;
  uint32_t unaudited; /* statements gone up that JavaScript has not audited yet (C_AUDITED) */
  int closing;        /* a teardown: no more client input; the goodbye waits for a boundary */
  int broke;          /* the client broke the protocol: waiting for JavaScript's goodbye */
  int finished;
  uint8_t *goodbye; size_t goodbye_len;
  uint8_t *notices; size_t notices_len;
  uint64_t bytes_in, bytes_out;
  int moved;          /* counts changed since the last EV_BYTES */
  struct relay *moved_next;
  struct my_state *my; /* a MySQL relay's framing (NULL: PostgreSQL) */
} relay;

typedef struct ep {
  double id;
  int fd, role, state;
  SSL *ssl;
  uint32_t events;    /* what it waits for: epoll's mask (a login's, libuv's UV_* flags) */
  int registered;
  int reading;        /* login: what is read goes up as data */
  size_t unacked;     /* login: bytes gone up as data since JavaScript's last ack */
  int ssl_read_wants_write, ssl_write_wants_read;
  int ending;         /* JavaScript ended it: close_notify and FIN once `out` is sent */
  int shut;           /* FIN sent */
  uint8_t *out; size_t out_len, out_off, out_cap;
  relay *r;
  long long deadline; int timer;
  struct ep *hnext;
  struct ep *tprev, *tnext;
  int timed;
  struct ep *kept;    /* a finished relay's target leg, ended once this client closes */
  struct tls_keys *keys; /* handshake and login: what the lean record layer will need */
  struct lean *lean;  /* relay: the TLS records sealed and opened here, OpenSSL's SSL freed */
  int lean_wanted;    /* a relay leg that goes lean once OpenSSL holds nothing of it */
  uv_poll_t *poll;    /* handshake and login: the JavaScript thread's (NULL once spliced) */
  int fin_seen;       /* login, not reading: the peer's FIN came (what it sent before waits in the socket) */
} ep;

typedef struct cmd {
  int kind;
  double id, id2;
  uint8_t *data; size_t len;
  uint8_t *data2; size_t len2;
  uint8_t *data3; size_t len3;
  int flag, flag2;
  uint32_t limit;
  /* splice of a MySQL relay: its client's max packet, the reply shapes, the KILL head limit */
  int mysql, deprecate_eof, cache_metadata;
  uint32_t max_packet, hold_limit;
  ep *client, *target; /* C_SPLICE: the legs the JavaScript thread handed over */
  struct cmd *next;
} cmd;

typedef struct evt {
  int kind;
  double id;
  double a, b, c, d;
  uint8_t *data; size_t len;
  char *text;
} evt;

static int epfd = -1, evfd = -1;
static pthread_t thread;
static int thread_started;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static cmd *cmd_head, *cmd_tail;
static napi_threadsafe_function tsfn;
static napi_env owner_env;
static uv_loop_t *js_loop;
static uint8_t readbuf[BUF];
/* The JavaScript thread's, for the logins it reads. */
static uint8_t login_buf[BUF];
static double next_id;
/* Both threads free endpoints: atomics (__atomic_*). */
static uint64_t live_endpoints;
/* Opened by the JavaScript thread since the loop last looked (the loop's trim counts them). */
static unsigned opened_pending;

/*
 * After a burst of sessions (their logins' buffers, handshakes, the JavaScript side's garbage),
 * glibc keeps the freed memory for reuse: 20 KiB or more per session of resident memory that
 * nothing uses. Once TRIM_AFTER endpoints have opened since the last trim and none for
 * TRIM_QUIET_NS, the loop hands it back (malloc_trim walks every arena: a few milliseconds,
 * once per burst, not per session).
 */
#define TRIM_AFTER 64
#define TRIM_QUIET_NS (2000 * MS)
static unsigned opened_since_trim;
static long long trim_at;

/* ---- events to JavaScript ---- */

/* Each thread gathers its own (the JavaScript thread's are its logins'). */
static __thread evt *events; static __thread size_t events_len, events_cap;
static __thread int events_urgent;
/* Statements among them (they wait for a batch; see finish()). */
static __thread size_t events_statements;
static __thread long long events_since;
static __thread size_t events_bytes;

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static evt *emit(int kind, double id, int urgent) {
  if (events_len == events_cap) {
    events_cap = events_cap ? events_cap * 2 : 64;
    events = realloc(events, events_cap * sizeof *events);
  }
  if (events_len == 0) events_since = now_ns();
  evt *v = &events[events_len++];
  memset(v, 0, sizeof *v);
  v->kind = kind;
  v->id = id;
  if (urgent) events_urgent = 1;
  return v;
}

static uint8_t *copy(const uint8_t *p, size_t n) {
  uint8_t *c = malloc(n ? n : 1);
  memcpy(c, p, n);
  return c;
}

typedef struct batch { size_t len; int from_js; evt v[]; } batch;

/* The JavaScript thread's batches in the threadsafe function's queue: while there are any, its
 * next goes there too, behind them (on_poll would otherwise deliver it first). */
static unsigned js_batches_queued;

static void free_batch(batch *b) {
  for (size_t i = 0; i < b->len; i++) { free(b->v[i].data); free(b->v[i].text); }
  free(b);
}

/* This thread's events so far, as a batch of their own (NULL: none). */
static batch *take_events(void) {
  if (events_len == 0) return NULL;
  batch *b = malloc(sizeof *b + events_len * sizeof(evt));
  b->len = events_len;
  b->from_js = 0;
  memcpy(b->v, events, events_len * sizeof(evt));
  events_len = 0;
  events_urgent = 0;
  events_bytes = 0;
  events_statements = 0;
  return b;
}

static void queue_batch(batch *b) {
  if (napi_call_threadsafe_function(tsfn, b, napi_tsfn_blocking) != napi_ok) {
    if (b->from_js) js_batches_queued--;
    free_batch(b);
  }
}

static void flush_events(int force) {
  if (events_len == 0) return;
  if (!force && !events_urgent && events_bytes < STATEMENT_BATCH && now_ns() - events_since < STATEMENT_DELAY_NS) return;
  queue_batch(take_events());
}

/* ---- endpoints by id ---- */

#define BUCKETS 65536
static ep *table[BUCKETS];
static unsigned bucket(double id) { return (unsigned)((uint64_t)id % BUCKETS); }
static ep *lookup(double id) {
  for (ep *e = table[bucket(id)]; e; e = e->hnext) if (e->id == id) return e;
  return NULL;
}
/* The JavaScript thread's endpoints (handshakes and logins), by id: its own table. */
static ep *login_table[BUCKETS];
static ep *login_lookup(double id) {
  for (ep *e = login_table[bucket(id)]; e; e = e->hnext) if (e->id == id) return e;
  return NULL;
}
static void link_ep(ep *e) {
  ep **t = e->poll ? login_table : table;
  e->hnext = t[bucket(e->id)];
  t[bucket(e->id)] = e;
}
static void unlink_ep(ep *e) {
  ep **p = &(e->poll ? login_table : table)[bucket(e->id)];
  while (*p && *p != e) p = &(*p)->hnext;
  if (*p) *p = e->hnext;
}

/* ---- deadlines ---- */

static ep *timed_head;
static void set_deadline(ep *e, int timer, long long at) {
  e->timer = timer;
  e->deadline = at;
  if (!e->timed) {
    e->timed = 1;
    e->tprev = NULL;
    e->tnext = timed_head;
    if (timed_head) timed_head->tprev = e;
    timed_head = e;
  }
}
static void clear_deadline(ep *e) {
  if (!e->timed) return;
  if (e->tprev) e->tprev->tnext = e->tnext; else timed_head = e->tnext;
  if (e->tnext) e->tnext->tprev = e->tprev;
  e->timed = 0;
  e->timer = T_NONE;
}

/* ---- endpoint I/O ---- */

static void on_poll(uv_poll_t *h, int status, int got);

static void set_events(ep *e, uint32_t ev) {
  if (e->fd < 0) return;
  if (e->poll) {
    /* The JavaScript thread's: its poll handle in Node's loop. epoll reports a hang-up even to
     * a descriptor that waits for nothing (a login stopped for its splice, or past its window);
     * libuv only as UV_DISCONNECT, which is the peer's FIN as well: asked for until that FIN
     * came, and again once this side has sent its own, when the connection is over (on_poll). */
    uint32_t want = (ev & EPOLLIN ? UV_READABLE : 0) | (ev & EPOLLOUT ? UV_WRITABLE : 0);
    if (!(ev & EPOLLIN) && (!e->fin_seen || e->shut)) want |= UV_DISCONNECT;
    /* Past the FIN, waiting for nothing: still registered (for urgent data, which nothing here
     * sends), so that a reset or error is reported, as epoll reports it to any descriptor. */
    if (want == 0) want = UV_PRIORITIZED;
    if (e->registered && e->events == want) return;
    e->registered = 1;
    e->events = want;
    uv_poll_start(e->poll, (int)want, on_poll);
    return;
  }
  if (!e->registered) {
    struct epoll_event x = { .events = ev, .data.ptr = e };
    epoll_ctl(epfd, EPOLL_CTL_ADD, e->fd, &x);
    e->registered = 1;
    e->events = ev;
    return;
  }
  if (e->events == ev) return;
  struct epoll_event x = { .events = ev, .data.ptr = e };
  epoll_ctl(epfd, EPOLL_CTL_MOD, e->fd, &x);
  e->events = ev;
}

/* Appends p[0..n) to `out` as it is (p NULL: n bytes of room, filled by the caller). */
static void queue_raw(ep *e, const uint8_t *p, size_t n) {
  if (n == 0) return;
  if (e->out_off > 0 && e->out_off == e->out_len) e->out_off = e->out_len = 0;
  if (e->out_len + n > e->out_cap) {
    if (e->out_off > 0) {
      memmove(e->out, e->out + e->out_off, e->out_len - e->out_off);
      e->out_len -= e->out_off;
      e->out_off = 0;
    }
    if (e->out_len + n > e->out_cap) {
      e->out_cap = (e->out_len + n) * 2;
      e->out = realloc(e->out, e->out_cap);
    }
  }
  if (p) memcpy(e->out + e->out_len, p, n);
  e->out_len += n;
}

static size_t pending_out(ep *e) { return e->out_len - e->out_off; }

/*
 * ---- the lean record layer ----
 *
 * OpenSSL runs each TLS handshake and the login's records. When a leg joins a relay, holds
 * nothing in OpenSSL (no record half read, nothing half written) and speaks TLS 1.3 with an
 * AEAD suite, its SSL object (12-28 KiB with its session, the peer's chain and the buffers) is
 * freed, and the records go on here, as the kernel's TLS does after such a hand-over: the
 * traffic secrets come from the keylog callback, the sequence numbers from counting each
 * record since the handshake (the message callback); each direction keeps its secret, key, IV
 * and count (RFC 8446 5.2-5.3, 7.1-7.2), and borrows one of the thread's AEAD contexts to seal
 * or open (AEAD_SLOTS). What an idle session holds is that state alone; a record that came in
 * halves is kept until its rest arrives.
 *
 * After the hand-over the peer may send application data, alerts (close_notify ends the
 * stream; any other alert fails it), a KeyUpdate (followed, and answered when asked), or,
 * from a target, a NewSessionTicket (dropped: the gateway does not resume). Anything else,
 * a bad tag, a record over 2^14 + 256 bytes, an empty inner plaintext or a handshake message
 * split across records fails the leg with a fatal alert. The gateway moves to a new key of
 * its own after KEY_RECORDS records, far inside AES-GCM's limit (RFC 8446 5.5).
 */
#define RECORD_MAX (16384 + 256)
#define RECORD_PLAIN 16384
#define TAG 16
#define OVERHEAD (5 + 1 + TAG)
#define KEY_RECORDS (1ull << 23)
#define RAWBUF (2 * (5 + RECORD_MAX))

typedef struct lean_dir {
  uint8_t secret[48];
  uint8_t key[32];
  uint8_t iv[12];
  uint64_t seq;
  int slot;           /* its AEAD context among the thread's (aead_for), or -1 */
} lean_dir;

/*
 * AEAD contexts (1.1 KiB each with OpenSSL 3: the key schedule and GHASH's table) are the
 * thread's, not the sessions': a direction that seals or opens a record takes one of
 * AEAD_SLOTS, keyed for it, and keeps it until another direction needs the slot. Active
 * sessions (up to AEAD_SLOTS directions) find theirs keyed; an idle one holds none; one whose
 * slot was taken keys another (a key schedule, well under a microsecond). A slot is wiped when
 * its direction ends or moves to its next key.
 */
#define AEAD_SLOTS 256
typedef struct aead_slot { lean_dir *owner; EVP_CIPHER_CTX *ctx; } aead_slot;
static aead_slot aead_slots[AEAD_SLOTS];
static unsigned aead_hand;
/* Contexts keyed for a direction that had none (stats(): a gauge of how often slots change hands). */
static uint64_t aead_keyings;

static void aead_release(lean_dir *d) {
  if (d->slot < 0) return;
  aead_slot *s = &aead_slots[d->slot];
  if (s->owner == d) {
    s->owner = NULL;
    EVP_CIPHER_CTX_reset(s->ctx);
  }
  d->slot = -1;
}

typedef struct lean {
  lean_dir rx, tx;
  const EVP_CIPHER *cipher;
  const EVP_MD *md;
  int keylen, hashlen;
  uint8_t *in; size_t in_len, in_cap; /* read, not opened yet: the start of a record, or records that did not fit */
  int filled;                 /* the last read filled its buffer: the socket may hold more */
  int eof;                    /* the peer's close_notify was read */
  int notified;               /* ours is sealed (or a fatal alert went instead) */
  int update_owed;            /* the peer asked for a KeyUpdate of ours */
  int broken;                 /* sealing failed: the leg's next write fails */
  const char *failed;         /* why the leg failed (the session's end says it) */
} lean;

/* From the handshake to the hand-over: both traffic secrets and the records since. */
typedef struct tls_keys {
  uint8_t client[48], server[48];
  int have;                   /* 1: the client's secret, 2: the server's */
  size_t len;
  int counting;               /* the handshake is done: records count from here */
  int server_finished;        /* a TLS 1.3 server wrote its Finished: its records are the application key's */
  int spoiled;                /* a KeyUpdate during the login: OpenSSL keeps the leg */
  uint64_t rx, tx;
  /* Bytes read from the socket since the handshake, and those the records counted since span:
   * equal only when OpenSSL holds no part of a record (a header alone leaves nothing that
   * SSL_has_pending reports). */
  uint64_t read_base, read_whole;
} tls_keys;

static const uint8_t close_notify[2] = { 1, 0 };
static uint8_t rawbuf[RAWBUF];
static uint8_t sealbuf[BUF + 3 * OVERHEAD + 8];
static uint64_t lean_endpoints;

/* A hex digit's value, or -1. */
static int nibble(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* (sscanf's "%2x" took 3 µs a 48-byte secret, on JavaScript's thread at every handshake.) */
static int unhex(const char *h, uint8_t *out, size_t max, size_t *len) {
  size_t n = strlen(h);
  while (n > 0 && (h[n - 1] == '\n' || h[n - 1] == '\r')) n--;
  if (n % 2 || n / 2 > max) return 0;
  for (size_t i = 0; i < n / 2; i++) {
    int hi = nibble(h[2 * i]), lo = nibble(h[2 * i + 1]);
    if (hi < 0 || lo < 0) return 0;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  *len = n / 2;
  return 1;
}

/* SSL_CTX_set_keylog_callback: the two application traffic secrets, for the hand-over. */
static void keylog(const SSL *s, const char *line) {
  ep *e = SSL_get_app_data(s);
  if (!e || !e->keys) return;
  tls_keys *k = e->keys;
  int which = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0 ? 1 : strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0 ? 2 : 0;
  if (!which) return;
  const char *secret = strrchr(line, ' ');
  size_t len = 0;
  if (!secret || !unhex(secret + 1, which == 1 ? k->client : k->server, 48, &len) || (len != 32 && len != 48)) { k->spoiled = 1; return; }
  k->len = len;
  k->have |= which;
}

/* SSL_set_msg_callback: every record after the handshake moves a sequence number on. */
static void on_record(int write_p, int version, int content_type, const void *buf, size_t len, SSL *s, void *arg) {
  (void)version; (void)arg;
  ep *e = SSL_get_app_data(s);
  if (!e || !e->keys) return;
  if (!e->keys->counting) {
    /* A TLS 1.3 server writes its session tickets after reading the client's Finished, before
     * the handshake returns done, and under the application key: they count. A record's header
     * is reported before the message in it, so the Finished's own record is not counted. */
    if (!write_p || e->role != ROLE_SERVER || SSL_version(s) != TLS1_3_VERSION) return;
    if (content_type == SSL3_RT_HANDSHAKE && len > 0 && ((const uint8_t *)buf)[0] == SSL3_MT_FINISHED) e->keys->server_finished = 1;
    else if (content_type == SSL3_RT_HEADER && e->keys->server_finished) e->keys->tx++;
    return;
  }
  if (content_type == SSL3_RT_HEADER) {
    if (write_p) e->keys->tx++;
    else {
      e->keys->rx++;
      if (len >= 5) e->keys->read_whole += 5 + ((size_t)((const uint8_t *)buf)[3] << 8 | ((const uint8_t *)buf)[4]);
    }
  } else if (content_type == SSL3_RT_HANDSHAKE && len > 0 && ((const uint8_t *)buf)[0] == SSL3_MT_KEY_UPDATE) e->keys->spoiled = 1;
}

static void free_keys(ep *e) {
  if (!e->keys) return;
  OPENSSL_cleanse(e->keys, sizeof *e->keys);
  free(e->keys);
  e->keys = NULL;
}

/* HKDF-Expand-Label(secret, label, "", n), n at most the hash's length (one HMAC block). */
static int expand_label(lean *l, const uint8_t *secret, const char *label, uint8_t *out, int n) {
  uint8_t info[32], t[EVP_MAX_MD_SIZE];
  size_t ll = strlen(label), i = 0;
  unsigned tl = 0;
  info[i++] = (uint8_t)(n >> 8);
  info[i++] = (uint8_t)n;
  info[i++] = (uint8_t)(6 + ll);
  memcpy(info + i, "tls13 ", 6);
  i += 6;
  memcpy(info + i, label, ll);
  i += ll;
  info[i++] = 0;
  info[i++] = 1;
  int ok = HMAC(l->md, secret, l->hashlen, info, i, t, &tl) != NULL && (int)tl >= n;
  if (ok) memcpy(out, t, (size_t)n);
  OPENSSL_cleanse(t, sizeof t);
  return ok;
}

/* The direction's key and IV from its secret; its count starts again. */
static int dir_keys(lean *l, lean_dir *d) {
  aead_release(d);
  d->seq = 0;
  return expand_label(l, d->secret, "key", d->key, l->keylen) && expand_label(l, d->secret, "iv", d->iv, 12);
}

/* The direction's AEAD context, keyed (see AEAD_SLOTS), or NULL. */
static EVP_CIPHER_CTX *aead_for(lean *l, lean_dir *d, int enc) {
  if (d->slot >= 0 && aead_slots[d->slot].owner == d) return aead_slots[d->slot].ctx;
  unsigned i = aead_hand++ % AEAD_SLOTS;
  aead_slot *s = &aead_slots[i];
  if (s->owner) s->owner->slot = -1;
  s->owner = NULL;
  if (!s->ctx && !(s->ctx = EVP_CIPHER_CTX_new())) return NULL;
  if (EVP_CipherInit_ex(s->ctx, l->cipher, NULL, d->key, NULL, enc) != 1) { EVP_CIPHER_CTX_reset(s->ctx); return NULL; }
  s->owner = d;
  d->slot = (int)i;
  aead_keyings++;
  return s->ctx;
}

/* KeyUpdate: the next secret of the direction (RFC 8446 7.2). */
static int next_key(lean *l, lean_dir *d) {
  uint8_t next[48];
  if (!expand_label(l, d->secret, "traffic upd", next, l->hashlen)) return 0;
  memcpy(d->secret, next, (size_t)l->hashlen);
  OPENSSL_cleanse(next, sizeof next);
  return dir_keys(l, d);
}

static void nonce(const lean_dir *d, uint8_t n[12]) {
  memcpy(n, d->iv, 12);
  for (int i = 0; i < 8; i++) n[11 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

static void free_lean(ep *e) {
  lean *l = e->lean;
  if (!l) return;
  aead_release(&l->rx);
  aead_release(&l->tx);
  free(l->in);
  OPENSSL_cleanse(l, sizeof *l);
  free(l);
  e->lean = NULL;
  lean_endpoints--;
}

/* One record of inner type `type` holding p[0..n) (n <= RECORD_PLAIN), at dst: its length, or 0. */
static size_t seal_one(lean *l, uint8_t type, const uint8_t *p, size_t n, uint8_t *dst) {
  lean_dir *d = &l->tx;
  size_t len = n + 1 + TAG;
  uint8_t iv[12];
  int outl;
  dst[0] = 23; dst[1] = 3; dst[2] = 3; dst[3] = (uint8_t)(len >> 8); dst[4] = (uint8_t)len;
  nonce(d, iv);
  EVP_CIPHER_CTX *c = aead_for(l, d, 1);
  int ok = c != NULL && EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) == 1 &&
    EVP_EncryptUpdate(c, NULL, &outl, dst, 5) == 1 &&
    (n == 0 || EVP_EncryptUpdate(c, dst + 5, &outl, p, (int)n) == 1) &&
    EVP_EncryptUpdate(c, dst + 5 + n, &outl, &type, 1) == 1 &&
    EVP_EncryptFinal_ex(c, dst + 5 + n + 1, &outl) == 1 &&
    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TAG, dst + 5 + n + 1) == 1;
  d->seq++;
  return ok ? 5 + len : 0;
}

/* p[0..n) sealed at dst in records (a KeyUpdate of ours first when one is due): the bytes
 * written, or 0 when sealing failed. dst holds n + (n / RECORD_PLAIN + 2) * OVERHEAD + 5. */
static size_t seal(lean *l, uint8_t type, const uint8_t *p, size_t n, uint8_t *dst) {
  size_t w = 0;
  if (l->update_owed || l->tx.seq >= KEY_RECORDS) {
    static const uint8_t update[5] = { SSL3_MT_KEY_UPDATE, 0, 0, 1, 0 };
    size_t k = seal_one(l, 22, update, sizeof update, dst);
    if (k == 0 || !next_key(l, &l->tx)) return 0;
    l->update_owed = 0;
    w += k;
  }
  do {
    size_t take = n < RECORD_PLAIN ? n : RECORD_PLAIN;
    size_t k = seal_one(l, type, p, take, dst + w);
    if (k == 0) return 0;
    w += k;
    p += take;
    n -= take;
  } while (n > 0);
  return w;
}

static size_t sealed_size(size_t n) { return n + (n / RECORD_PLAIN + 2) * OVERHEAD + 5; }

/* A fatal alert instead of close_notify, sent as far as the socket takes it now (the leg is
 * closed right after). */
static void lean_alert(ep *e, uint8_t code) {
  lean *l = e->lean;
  if (!l || l->notified || e->fd < 0) return;
  l->notified = 1;
  /* Records still queued would go after it with sequence numbers before it: no alert then. */
  if (pending_out(e) > 0) return;
  l->update_owed = 0;
  uint8_t a[2] = { 2, code }, rec[2 + OVERHEAD + 32];
  size_t k = seal(l, 21, a, 2, rec);
  if (k > 0 && send(e->fd, rec, k, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* gone already */ }
}

/* Post-handshake messages of one record; -1 with an alert's code when the leg must fail. */
static int after_handshake(ep *e, const uint8_t *p, size_t n, uint8_t *alert) {
  lean *l = e->lean;
  while (n > 0) {
    if (n < 4) { *alert = 10; return -1; }
    size_t len = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (4 + len > n) { *alert = 10; return -1; }
    if (p[0] == SSL3_MT_NEWSESSION_TICKET && e->role == ROLE_CLIENT) { /* no resumption: dropped */ }
    else if (p[0] == SSL3_MT_KEY_UPDATE) {
      /* The last message of its record: what follows would be under the next key. */
      if (len != 1) { *alert = 50; return -1; }
      if (p[4] > 1) { *alert = 47; return -1; }
      if (4 + len != n) { *alert = 10; return -1; }
      if (!next_key(l, &l->rx)) { *alert = 80; return -1; }
      if (p[4] == 1) l->update_owed = 1;
    } else { *alert = 10; return -1; }
    p += 4 + len;
    n -= 4 + len;
  }
  return 0;
}

static size_t record_len(const uint8_t *h) { return (size_t)h[3] << 8 | h[4]; }

/* Reads and opens records: the application data's bytes at buf (BUF at most), 0 when none is
 * there now, -1 at the peer's close_notify, EOF or a failure (after a fatal alert). */
static int lean_read(ep *e, uint8_t *buf) {
  lean *l = e->lean;
  if (l->eof) return -1;
  size_t have = l->in_len;
  if (have > 0) memcpy(rawbuf, l->in, have);
  l->in_len = 0;
  l->filled = 0;
  if (have < 5 || have < 5 + record_len(rawbuf)) {
    ssize_t r = recv(e->fd, rawbuf + have, RAWBUF - have, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) return -1;
    if (r > 0) {
      have += (size_t)r;
      l->filled = have == RAWBUF;
    }
  }
  size_t off = 0, out = 0;
  uint8_t alert = 0;
  while (!l->eof && have - off >= 5) {
    uint8_t *h = rawbuf + off;
    size_t len = record_len(h);
    if (h[0] != 23 || h[1] != 3 || h[2] != 3) { alert = 10; break; }
    if (len > RECORD_MAX) { alert = 22; break; }
    /* Too short to hold a tag and a content type: it cannot be opened. */
    if (len < 1 + TAG) { alert = 20; break; }
    if (have - off < 5 + len) break;
    size_t inner = len - TAG;
    if (out + inner > BUF) break;
    lean_dir *d = &l->rx;
    uint8_t iv[12], *plain = buf + out;
    int outl;
    nonce(d, iv);
    EVP_CIPHER_CTX *c = aead_for(l, d, 0);
    if (!c) { alert = 80; break; }
    int ok = EVP_DecryptInit_ex(c, NULL, NULL, NULL, iv) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TAG, h + 5 + inner) == 1 &&
      EVP_DecryptUpdate(c, NULL, &outl, h, 5) == 1 &&
      EVP_DecryptUpdate(c, plain, &outl, h + 5, (int)inner) == 1 &&
      EVP_DecryptFinal_ex(c, plain + inner, &outl) == 1;
    d->seq++;
    if (!ok) { alert = 20; break; }
    size_t n = inner;
    while (n > 0 && plain[n - 1] == 0) n--;
    if (n == 0) { alert = 10; break; }
    uint8_t type = plain[--n];
    if (n > RECORD_PLAIN) { alert = 22; break; }
    off += 5 + len;
    if (type == 23) out += n;
    else if (type == 21) {
      if (n != 2) { alert = 50; break; }
      if (plain[1] != 0) { l->notified = 1; alert = 255; break; }
      l->eof = 1;
    } else if (type == 22) {
      /* RFC 8446 5.1: no zero-length fragments of handshake messages. */
      if (n == 0) { alert = 10; break; }
      if (after_handshake(e, plain, n, &alert) < 0) break;
    } else { alert = 10; break; }
  }
  if (alert) {
    l->failed = alert == 20 ? "a record failed its authentication (bad_record_mac sent)"
      : alert == 22 ? "a record longer than TLS allows (record_overflow sent)"
      : alert == 50 ? "a malformed record (decode_error sent)"
      : alert == 47 ? "a KeyUpdate with an illegal request value (illegal_parameter sent)"
      : alert == 80 ? "the gateway could not derive or use a key (internal_error sent)"
      : alert == 255 ? "the peer sent a fatal alert" : "an unexpected record (unexpected_message sent)";
    if (alert != 255) lean_alert(e, alert);
    return -1;
  }
  if (off < have) {
    /* Kept for the next read, in the buffer the last one used when it fits: a bulk transfer
     * leaves part of a record after nearly every read. */
    l->in_len = have - off;
    if (l->in_cap < l->in_len) {
      free(l->in);
      l->in_cap = l->in_len < RECORD_MAX + 5 ? RECORD_MAX + 5 : l->in_len;
      l->in = malloc(l->in_cap);
    }
    memcpy(l->in, rawbuf + off, l->in_len);
  } else if (l->in) {
    /* All opened: an idle leg holds no buffer. */
    free(l->in);
    l->in = NULL;
    l->in_cap = 0;
  }
  if (out > 0) return (int)out;
  return l->eof ? -1 : 0;
}

/* A whole record is held, or the peer's close_notify was read with data before it: either is
 * to be taken without waiting for the socket, which wakes nobody for them. */
static int lean_held(ep *e) {
  lean *l = e->lean;
  return l && (l->eof || (l->in_len >= 5 && l->in_len >= 5 + record_len(l->in)));
}

/* More may be read now: a whole record held, or the last read filled its buffer. */
static int lean_ready(ep *e) { return lean_held(e) || e->lean->filled; }

static void queue_raw(ep *e, const uint8_t *p, size_t n);

/* What the leg sends goes into `out` sealed. */
static int seal_out(ep *e, uint8_t type, const uint8_t *p, size_t n) {
  size_t room = sealed_size(n);
  queue_raw(e, NULL, room);
  size_t k = seal(e->lean, type, p, n, e->out + e->out_len - room);
  e->out_len -= room - k;
  if (k == 0) e->lean->broken = 1;
  return k > 0 ? 0 : -1;
}

/*
 * A TLS endpoint's socket as OpenSSL reads it. Without read-ahead (a hand-over needs every byte
 * OpenSSL took to belong to a record it read whole), OpenSSL reads a record's header and then
 * its body, two recv() calls a record and a third that finds nothing; a resumed handshake's
 * few records cost a dozen. Here one recv() takes what the socket holds, and OpenSSL's small
 * reads are served from it: what it has not taken yet stays held here (sock_held), where ep_more
 * finds it and a hand-over to the lean record layer takes it along (go_lean). A read as large as
 * OpenSSL's own read-ahead (a relay's leg that OpenSSL keeps) goes straight into its buffer.
 * Nothing is held once it is all taken: an idle endpoint keeps no buffer.
 */
typedef struct sock_in { int fd, eof; uint8_t *buf; size_t off, len; } sock_in;
#define SOCK_IN_CAP (5 + RECORD_MAX)
#define SOCK_IN_DIRECT 4096
static BIO_METHOD *sock_method;

static void sock_drop(sock_in *s) {
  free(s->buf);
  s->buf = NULL;
  s->off = s->len = 0;
}

static int sock_read(BIO *b, char *out, int n) {
  sock_in *s = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (n <= 0) return 0;
  if (s->off == s->len) {
    /* Nothing held: no buffer either (sock_drop). */
    int direct = n >= SOCK_IN_DIRECT;
    if (!direct && !(s->buf = malloc(SOCK_IN_CAP))) return -1;
    ssize_t r = recv(s->fd, direct ? (uint8_t *)out : s->buf, direct ? (size_t)n : SOCK_IN_CAP, 0);
    if (r <= 0) {
      sock_drop(s);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) BIO_set_retry_read(b);
      /* As a socket BIO's: OpenSSL asks (BIO_eof) to tell an unexpected EOF from other errors. */
      if (r == 0) s->eof = 1;
      return r == 0 ? 0 : -1;
    }
    if (direct) return (int)r;
    s->off = 0;
    s->len = (size_t)r;
  }
  size_t k = s->len - s->off < (size_t)n ? s->len - s->off : (size_t)n;
  memcpy(out, s->buf + s->off, k);
  s->off += k;
  if (s->off == s->len) sock_drop(s);
  return (int)k;
}

static int sock_write(BIO *b, const char *p, int n) {
  sock_in *s = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  ssize_t w = send(s->fd, p, (size_t)n, MSG_NOSIGNAL);
  if (w < 0 && (errno == EAGAIN || errno == EINTR)) BIO_set_retry_write(b);
  return (int)w;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num; (void)ptr;
  sock_in *s = BIO_get_data(b);
  switch (cmd) {
    case BIO_CTRL_PENDING: return (long)(s->len - s->off);
    case BIO_CTRL_EOF: return s->eof;
    case BIO_CTRL_FLUSH: return 1;
    case BIO_C_GET_FD: if (ptr) *(int *)ptr = s->fd; return s->fd;
    default: return 0;
  }
}

static int sock_destroy(BIO *b) {
  sock_in *s = BIO_get_data(b);
  if (s) { free(s->buf); free(s); }
  BIO_set_data(b, NULL);
  return 1;
}

/* The endpoint's socket for OpenSSL, holding `ahead` (what JavaScript read of the client's hello
 * already) as if the socket had just given it; NULL when out of memory. */
static BIO *sock_bio(int fd, const uint8_t *ahead, size_t ahead_len) {
  if (!sock_method) {
    sock_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "gatehouse socket");
    if (!sock_method) return NULL;
    BIO_meth_set_read(sock_method, sock_read);
    BIO_meth_set_write(sock_method, sock_write);
    BIO_meth_set_ctrl(sock_method, sock_ctrl);
    BIO_meth_set_destroy(sock_method, sock_destroy);
  }
  sock_in *s = calloc(1, sizeof *s);
  BIO *b = s ? BIO_new(sock_method) : NULL;
  if (!b) { free(s); return NULL; }
  s->fd = fd;
  if (ahead_len > 0) {
    s->buf = malloc(ahead_len);
    if (!s->buf) { free(s); BIO_free(b); return NULL; }
    memcpy(s->buf, ahead, ahead_len);
    s->len = ahead_len;
  }
  BIO_set_data(b, s);
  BIO_set_init(b, 1);
  return b;
}

/* Bytes read from the socket that OpenSSL has not taken yet. */
static size_t sock_held(SSL *ssl) { return BIO_ctrl_pending(SSL_get_rbio(ssl)); }

/*
 * The hand-over, once OpenSSL holds nothing of the leg: 1 when it went lean, 0 when it waits
 * (a record half read or half written), -1 when OpenSSL keeps it (TLS 1.2, another suite, a
 * KeyUpdate during the login, no secrets).
 */
static int go_lean(ep *e) {
  tls_keys *k = e->keys;
  SSL *s = e->ssl;
  int id = SSL_version(s) == TLS1_3_VERSION ? SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(s)) : 0;
  const EVP_CIPHER *cipher = id == 0x1301 ? EVP_aes_128_gcm() : id == 0x1302 ? EVP_aes_256_gcm() : id == 0x1303 ? EVP_chacha20_poly1305() : NULL;
  if (!k || k->spoiled || k->have != 3 || !cipher || k->len != (id == 0x1302 ? 48u : 32u)) return -1;
  if (SSL_has_pending(s) || pending_out(e) > 0 || e->ssl_write_wants_read || e->ssl_read_wants_write) return 0;
  /* Every byte read since the handshake belongs to a record OpenSSL has read whole. */
  if (BIO_number_read(SSL_get_rbio(s)) - k->read_base != k->read_whole) return 0;
  lean *l = calloc(1, sizeof *l);
  if (!l) return -1;
  l->cipher = cipher;
  l->md = id == 0x1302 ? EVP_sha384() : EVP_sha256();
  l->hashlen = (int)k->len;
  l->keylen = id == 0x1301 ? 16 : 32;
  int server = e->role == ROLE_SERVER;
  memcpy(l->rx.secret, server ? k->client : k->server, k->len);
  memcpy(l->tx.secret, server ? k->server : k->client, k->len);
  l->rx.slot = l->tx.slot = -1;
  int ok = dir_keys(l, &l->rx) && dir_keys(l, &l->tx);
  l->rx.seq = k->rx;
  l->tx.seq = k->tx;
  lean_endpoints++;
  /* What was read past OpenSSL's last record is the lean layer's first input (which lean_read
   * copies into its buffer: more than that, only from a hello JavaScript read ahead with a
   * flood behind it, and OpenSSL keeps the leg). */
  size_t held = sock_held(s);
  if (held > RAWBUF) ok = 0;
  if (ok && held > 0) {
    /* (lean_read grows it when a record's rest needs the room.) */
    l->in_cap = held;
    l->in = malloc(held);
    ok = l->in && BIO_read(SSL_get_rbio(s), l->in, (int)held) == (int)held;
    l->in_len = held;
  }
  if (!ok) { e->lean = l; free_lean(e); return -1; }
  free_keys(e);
  SSL_free(s);
  e->ssl = NULL;
  e->lean = l;
  e->lean_wanted = 0;
  return 1;
}

/* OpenSSL keeps the leg for the relay: it reads ahead (a record's header and body in one
 * read, and what follows), which the login does not, so that nothing is left in it at a
 * hand-over. */
static void keep_openssl(ep *e) {
  e->lean_wanted = 0;
  free_keys(e);
  if (!e->ssl) return;
  SSL_set_msg_callback(e->ssl, NULL);
  SSL_set_read_ahead(e->ssl, 1);
}

/* Goes lean where it can, now or once OpenSSL holds nothing of the leg; a leg being closed
 * stays with OpenSSL (its close_notify is OpenSSL's). */
static void try_lean(ep *e) {
  if (!e->lean_wanted || !e->ssl) return;
  if (e->ending) { e->lean_wanted = 0; free_keys(e); return; }
  if (go_lean(e) < 0) keep_openssl(e);
}

/* Queues what the leg is to send: sealed on a lean leg (a failure to seal fails the socket's
 * next write), as it is otherwise. */
static void queue_out(ep *e, const uint8_t *p, size_t n) {
  if (n == 0) return;
  if (e->lean) { seal_out(e, 23, p, n); return; }
  queue_raw(e, p, n);
}

/* Writes what the socket takes of p[0..n) now: the bytes written, or -1 on a failed socket.
 * A TLS write that must wait keeps its record in OpenSSL; the retry repeats these bytes. */
static ssize_t write_some(ep *e, const uint8_t *p, size_t n) {
  size_t off = 0;
  if (e->lean && e->lean->broken) return -1;
  e->ssl_write_wants_read = 0;
  while (off < n) {
    if (e->ssl) {
      ERR_clear_error();
      size_t left = n - off;
      int w = SSL_write(e->ssl, p + off, left > 0x7fffffff ? 0x7fffffff : (int)left);
      if (w <= 0) {
        int err = SSL_get_error(e->ssl, w);
        if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ) return -1;
        e->ssl_write_wants_read = err == SSL_ERROR_WANT_READ;
        break;
      }
      off += (size_t)w;
    } else {
      ssize_t w = send(e->fd, p + off, n - off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        return -1;
      }
      off += (size_t)w;
    }
  }
  return (ssize_t)off;
}

/* Sends what is queued; 0 when all went, 1 when some waits, -1 on a failed socket. An idle
 * endpoint keeps no buffer. */
static int flush_out(ep *e) {
  if (e->fd < 0) return -1;
  for (;;) {
    ssize_t w = write_some(e, e->out + e->out_off, pending_out(e));
    if (w < 0) return -1;
    e->out_off += (size_t)w;
    if (pending_out(e) > 0) return 1;
    free(e->out);
    e->out = NULL;
    e->out_len = e->out_off = e->out_cap = 0;
    /* A lean leg's close_notify goes out like its data, before the FIN. */
    if (!(e->ending && !e->shut && e->lean && !e->lean->notified)) break;
    e->lean->notified = 1;
    e->lean->update_owed = 0;
    if (seal_out(e, 21, close_notify, 2) < 0) return -1;
  }
  /* Nothing of the leg is left in OpenSSL now: a relay's leg may go lean. */
  if (e->lean_wanted) try_lean(e);
  if (e->ending && !e->shut) {
    if (e->ssl) { ERR_clear_error(); SSL_shutdown(e->ssl); }
    shutdown(e->fd, SHUT_WR);
    e->shut = 1;
  }
  return 0;
}

/* Sends p[0..n) as far as the socket takes it now and queues the rest (the usual chunk goes
 * straight from the read buffer, with no copy); 0, or -1 on a failed socket. */
static int send_out(ep *e, const uint8_t *p, size_t n) {
  if (e->lean && pending_out(e) == 0 && n <= BUF) {
    /* Sealed into the thread's buffer and sent from there; only what the socket leaves is kept. */
    size_t k = seal(e->lean, 23, p, n, sealbuf);
    if (k == 0) return -1;
    ssize_t w = write_some(e, sealbuf, k);
    if (w < 0) return -1;
    if ((size_t)w < k) queue_raw(e, sealbuf + w, k - (size_t)w);
    return 0;
  }
  if (pending_out(e) > 0 || e->lean) {
    queue_out(e, p, n);
    return flush_out(e) < 0 ? -1 : 0;
  }
  ssize_t w = write_some(e, p, n);
  if (w < 0) return -1;
  if ((size_t)w < n) queue_raw(e, p + w, n - (size_t)w);
  return 0;
}

/* SSL_free_buffers() could free a buffer still holding part of a record before OpenSSL 3.0.14
 * (CVE-2024-4741); set at init from the running OpenSSL. */
static int free_buffers_safe;

/* Reads one chunk: >0 bytes, 0 when nothing is there now, -1 at EOF or on an error. */
static int ep_read(ep *e, uint8_t *buf, int cap) {
  e->ssl_read_wants_write = 0;
  if (e->lean) return lean_read(e, buf);
  if (e->ssl) {
    ERR_clear_error();
    int r = SSL_read(e->ssl, buf, cap);
    if (r > 0) return r;
    int err = SSL_get_error(e->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
      /* Read dry: the record buffers go back (SSL_MODE_RELEASE_BUFFERS misses the read buffer
       * after a post-handshake message such as a session ticket, 17 KiB an idle session would
       * keep). SSL_free_buffers() declines while anything is pending either way. */
      if (free_buffers_safe) SSL_free_buffers(e->ssl);
      return 0;
    }
    if (err == SSL_ERROR_WANT_WRITE) { e->ssl_read_wants_write = 1; return 0; }
    return -1;
  }
  ssize_t r = recv(e->fd, buf, (size_t)cap, 0);
  if (r > 0) return (int)r;
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  return -1;
}

/* More may be readable right now without waiting for the socket (epoll is level-triggered:
 * what is still in the socket wakes the loop again). */
static int ep_more(ep *e, int last) { return e->ssl ? SSL_has_pending(e->ssl) || sock_held(e->ssl) > 0 : e->lean ? lean_ready(e) : last == BUF; }

/* Frees the endpoint: its socket closes (a FIN first when it still has one to send). */
static void forget_ready(ep *e);
static void free_poll(uv_handle_t *h) { free(h); }
/* A login endpoint leaves Node's loop (the handle goes once libuv is done with it). */
static void drop_poll(ep *e) {
  if (!e->poll) return;
  unlink_ep(e);
  e->poll->data = NULL;
  uv_close((uv_handle_t *)e->poll, free_poll);
  e->poll = NULL;
  e->registered = 0;
  e->events = 0;
}
static void free_ep(ep *e) {
  clear_deadline(e);
  if (e->poll) drop_poll(e);
  else {
    unlink_ep(e);
    forget_ready(e);
  }
  if (e->fd >= 0) {
    if (e->registered) epoll_ctl(epfd, EPOLL_CTL_DEL, e->fd, NULL);
    /* A FIN even while JavaScript still holds its own descriptor of the connection. */
    if (!e->shut) shutdown(e->fd, SHUT_WR);
    close(e->fd);
  }
  if (e->ssl) SSL_free(e->ssl);
  free_lean(e);
  free_keys(e);
  free(e->out);
  free(e);
  __atomic_sub_fetch(&live_endpoints, 1, __ATOMIC_RELAXED);
  /* Whatever failed on this endpoint left its entries on this thread's OpenSSL error queue,
   * and SSL_get_error() reports SSL_ERROR_SSL for every later call while it is not empty: the
   * next session to meet a full socket would be closed for it. Every TLS call also starts with
   * an empty queue (ERR_clear_error before it), for failures that free nothing (a shutdown). */
  ERR_clear_error();
}

/* A login-time endpoint is gone: JavaScript hears why. */
static void close_ep(ep *e, const char *why) {
  evt *v = emit(EV_CLOSED, e->id, 1);
  if (why) v->text = strdup(why);
  free_ep(e);
}

static const char *ssl_failure(ep *e) {
  static __thread char text[256];
  unsigned long code = ERR_peek_last_error();
  if (e->role == ROLE_CLIENT && SSL_get_verify_result(e->ssl) != X509_V_OK && code == 0)
    snprintf(text, sizeof text, "%s", X509_verify_cert_error_string(SSL_get_verify_result(e->ssl)));
  else if (code) ERR_error_string_n(code, text, sizeof text);
  else snprintf(text, sizeof text, "connection closed");
  return text;
}

/* ---- framing ---- */

typedef struct hooks_t { relay *r; int up; } hooks_t;

/* A captured statement goes up (the event owns `cap`): `a` and `b` are the door's (PostgreSQL:
 * the message type and the body's length; MySQL: the command byte and whether it was cut). */
static void statement_up(relay *r, double a, double b, uint8_t *cap, uint32_t len) {
  evt *v = emit(EV_STATEMENT, r->client->id, 0);
  v->a = a;
  v->b = b;
  v->data = cap;
  v->len = len;
  events_bytes += len;
  events_statements++;
  /* The audit keeps pace with the client, as relay.ts's in-line hook does: at the limit the
   * client is not read (and the statements go up now) until JavaScript has audited them. */
  if (++r->unaudited >= MAX_UNAUDITED) events_urgent = 1;
}

/* The first `limit` bytes of a Query or Parse body go up with the body's length. */
static void statement_done(relay *r, framer *f) {
  statement_up(r, f->type, f->body, f->cap, f->cap_len);
  f->cap = NULL;
  f->cap_len = f->cap_want = 0;
}

static void message_start(relay *r, int up, framer *f) {
  uint8_t t = f->type;
  if (up) {
    if (t == 'Q' || t == 'S' || t == 'F') r->awaiting++;
    if (t == 'X') r->terminated = 1;
    if (r->capture && (t == 'Q' || t == 'P')) {
      f->cap_want = f->body < r->limit ? f->body : r->limit;
      f->cap = malloc(f->cap_want ? f->cap_want : 1);
      f->cap_len = 0;
    }
  } else if (t == 'Z' && r->awaiting > 0) r->awaiting--;
}

static int at_boundary(framer *f) { return f->head_len == 0 && f->left == 0; }

/* Walks `n` bytes; with `stop`, returns at the first message end. Returns the bytes walked, or
 * -1 on a bad length (`bad` gets it). */
static long frame(relay *r, int up, const uint8_t *p, size_t n, int stop, int32_t *bad) {
  framer *f = up ? &r->up : &r->down;
  uint32_t max = up ? MAX_CLIENT_MESSAGE : MAX_SERVER_MESSAGE;
  size_t i = 0;
  while (i < n) {
    if (f->left == 0 && f->head_len < 5) {
      size_t need = (size_t)(5 - f->head_len), take = need < n - i ? need : n - i;
      memcpy(f->head + f->head_len, p + i, take);
      f->head_len += take;
      i += take;
      if (f->head_len < 5) return (long)i;
      int32_t len = (int32_t)((uint32_t)f->head[1] << 24 | (uint32_t)f->head[2] << 16 | (uint32_t)f->head[3] << 8 | f->head[4]);
      if (len < 4 || (uint32_t)len > max) { *bad = len; return -1; }
      f->type = f->head[0];
      f->body = f->left = (uint32_t)len - 4;
      message_start(r, up, f);
      if (f->left == 0) {
        f->head_len = 0;
        if (f->cap) statement_done(r, f);
        if (stop) return (long)i;
      }
      continue;
    }
    size_t take = f->left < n - i ? f->left : n - i;
    if (f->cap && f->cap_len < f->cap_want) {
      size_t c = f->cap_want - f->cap_len < take ? f->cap_want - f->cap_len : take;
      memcpy(f->cap + f->cap_len, p + i, c);
      f->cap_len += c;
    }
    i += take;
    f->left -= take;
    if (f->left == 0) {
      f->head_len = 0;
      if (f->cap) statement_done(r, f);
      if (stop) return (long)i;
    }
  }
  return (long)i;
}


/* ---- MySQL framing (the MySQL door's relays; protocols/mysql/relay.ts and response.ts on
 * Node's streams) ---- */

#define MY_PHYSICAL 0xffffffu  /* a full physical packet: the logical one goes on in the next */
#define MY_HEAD 24             /* bytes of a server packet the reply tracker reads */
enum my_cmd { MY_QUIT = 0x01, MY_QUERY = 0x03, MY_FIELD_LIST = 0x04, MY_PROCESS_KILL = 0x0c, MY_CHANGE_USER = 0x11,
  MY_PREPARE = 0x16, MY_SEND_LONG_DATA = 0x18, MY_STMT_CLOSE = 0x19, MY_FETCH = 0x1c };
/* A held command: none; its bytes being read; waiting for JavaScript's verdict; the rest of a
 * refused one dropped; its ERR waiting for the target to finish the replies it owes (the
 * client's bytes behind it wait too, so every reply reaches the client in its command's order). */
enum my_hold { HOLD_NONE, HOLD_READING, HOLD_WAITING, HOLD_DROPPING, HOLD_ANSWERING };
/* The reply tracker's states (response.ts). */
enum my_at { AT_IDLE, AT_UNKNOWN, AT_ONE, AT_FIRST, AT_INFILE, AT_COLUMNS, AT_EOF, AT_ROWS, AT_FIELD_LIST, AT_PREPARE, AT_DEFINITIONS };

typedef struct my_state {
  /* client to target */
  uint8_t uh[5]; int uh_len;   /* a header (with a command's first byte) split across reads */
  uint32_t u_left; int u_cont;
  uint64_t u_logical;
  uint32_t max_packet;
  uint8_t u_last_seq;
  int server_spoke;            /* the server, or the gateway in its place, spoke since the client's last packet */
  int out_failed;              /* a write to the target failed while framing */
  uint8_t *cap; uint32_t cap_len, cap_want; uint8_t cap_cmd; int cap_trunc, cap_skip;
  int refuse_seq;              /* a refused packet's ERR sequence id (-1: none) */
  int hold; uint8_t *held; size_t held_len; uint32_t hold_limit; uint8_t held_cmd;
  uint8_t *answer; size_t answer_len; /* a refused command's ERR payload, sent once its rest is dropped */
  uint8_t *stash; size_t stash_len;   /* client bytes read behind a held command */
  /* target to client */
  uint8_t dh[4]; int dh_len;
  uint32_t d_left; int d_cont;
  uint8_t head[MY_HEAD]; uint32_t head_have, head_want, first_len;
  uint8_t d_last_seq;
  /* the reply tracker: the reply under way, and the commands (first bytes) a pipelining client
   * sent behind its command, whose replies follow in order */
  int at; uint64_t at_left;
  int deprecate_eof, cache_metadata;
  uint8_t *queue; uint32_t q_head, q_len, q_cap;
} my_state;

static relay *my_relay_new(uint32_t max_packet, int deprecate_eof, int cache_metadata, uint32_t hold_limit) {
  relay *r = calloc(1, sizeof *r);
  my_state *m = calloc(1, sizeof *m);
  m->max_packet = max_packet;
  m->deprecate_eof = deprecate_eof;
  m->cache_metadata = cache_metadata;
  m->hold_limit = hold_limit;
  m->server_spoke = 1;
  m->refuse_seq = -1;
  r->my = m;
  return r;
}

static void my_free(relay *r) {
  my_state *m = r->my;
  if (!m) return;
  free(m->cap); free(m->held); free(m->answer); free(m->stash); free(m->queue);
  free(m);
  r->my = NULL;
}

/* Commands pipelined behind the one whose reply is under way, at most: past it the tracker
 * gives up (AT_UNKNOWN: busy, and the gateway's answers go at a packet boundary). */
#define MY_QUEUE_MAX 4096u

/* The reply a command starts. */
static void my_start(my_state *m, uint8_t cmd) {
  switch (cmd) {
    case MY_QUIT: case MY_STMT_CLOSE: case MY_SEND_LONG_DATA: m->at = AT_IDLE; return;
    case MY_QUERY: case 0x17 /* execute */: case 0x0a /* process info */: case 0xfa /* bulk execute */: m->at = AT_FIRST; return;
    case 0x0e: case 0x02: case 0x1f: case 0x1a: case 0x1b: case 0x07: case MY_PROCESS_KILL: case 0x0d: case 0x08: case 0x09: case 0x05: case 0x06:
      m->at = AT_ONE; return;
    case MY_FETCH: m->at = AT_ROWS; return;
    case MY_FIELD_LIST: m->at = AT_FIELD_LIST; return;
    case MY_PREPARE: m->at = AT_PREPARE; return;
    default: m->at = AT_UNKNOWN; return;
  }
}

/* A reply ended: the next pipelined command's starts. */
static void my_next(my_state *m) {
  while (m->at == AT_IDLE && m->q_head < m->q_len) my_start(m, m->queue[m->q_head++]);
  if (m->q_head == m->q_len) m->q_head = m->q_len = 0;
}

/* A command went to the target: its reply comes after those it was sent behind. Not followed
 * (AT_UNKNOWN), a new command is taken to mean the reply before it ended, as relay.ts does. */
static void my_command(my_state *m, uint8_t cmd) {
  if (m->at == AT_UNKNOWN || (m->at == AT_IDLE && m->q_len == m->q_head)) {
    m->q_head = m->q_len = 0;
    my_start(m, cmd);
    return;
  }
  if (m->q_len - m->q_head >= MY_QUEUE_MAX) { m->q_head = m->q_len = 0; m->at = AT_UNKNOWN; return; }
  if (m->q_len == m->q_cap) {
    if (m->q_head > 0) {
      memmove(m->queue, m->queue + m->q_head, m->q_len - m->q_head);
      m->q_len -= m->q_head;
      m->q_head = 0;
    } else {
      m->q_cap = m->q_cap ? m->q_cap * 2 : 16;
      m->queue = realloc(m->queue, m->q_cap);
    }
  }
  m->queue[m->q_len++] = cmd;
}

/* A length-encoded integer at h[*i], within `n`; -1 when it is not there or not one. */
static int my_lenenc(const uint8_t *h, uint32_t n, uint32_t *i, uint64_t *v) {
  if (*i >= n) return -1;
  uint8_t f = h[(*i)++];
  int k = f < 0xfb ? 0 : f == 0xfc ? 2 : f == 0xfd ? 3 : f == 0xfe ? 8 : -1;
  if (k < 0 || *i + (uint32_t)k > n) return -1;
  if (k == 0) { *v = f; return 0; }
  *v = 0;
  for (int j = k - 1; j >= 0; j--) *v = *v << 8 | h[*i + (uint32_t)j];
  *i += (uint32_t)k;
  return 0;
}

/* An OK packet's status flags (an OK-shaped 0xfe too), or -1. */
static int my_ok_status(const uint8_t *h, uint32_t n) {
  uint32_t i = 1; uint64_t x;
  if (n < 1 || my_lenenc(h, n, &i, &x) < 0 || my_lenenc(h, n, &i, &x) < 0 || i + 2 > n) return -1;
  return h[i] | h[i + 1] << 8;
}

static void my_after_status(my_state *m, int status) {
  if (status < 0) m->at = AT_UNKNOWN;
  else m->at = status & 0x0008 /* SERVER_MORE_RESULTS_EXISTS */ ? AT_FIRST : AT_IDLE;
}

static int my_is_eof(my_state *m, const uint8_t *h, uint32_t n, uint32_t length) {
  return n > 0 && h[0] == 0xfe && (m->deprecate_eof ? length < MY_PHYSICAL : length < 9);
}

/* One whole server packet, from its first bytes and its first physical length: the reply's next state. */
static void my_step(my_state *m, const uint8_t *h, uint32_t n, uint32_t length) {
  int err = n > 0 && h[0] == 0xff && length >= 3 && n >= 3 && (h[1] | h[2] << 8) != 0xffff;
  int progress = n > 0 && h[0] == 0xff && !err;
  switch (m->at) {
    case AT_IDLE: case AT_UNKNOWN: m->at = AT_UNKNOWN; return;
    case AT_ONE: m->at = AT_IDLE; return;
    case AT_FIRST: case AT_INFILE: {
      if (progress) return;
      if (err) { m->at = AT_IDLE; return; }
      if (n > 0 && h[0] == 0x00) { my_after_status(m, my_ok_status(h, n)); return; }
      if (m->at == AT_FIRST && n > 0 && h[0] == 0xfb) { m->at = AT_INFILE; return; }
      if (m->at == AT_INFILE) { m->at = AT_UNKNOWN; return; }
      uint32_t i = 0; uint64_t columns;
      if (my_lenenc(h, n, &i, &columns) < 0) { m->at = AT_UNKNOWN; return; }
      int follows = m->cache_metadata && i < n ? h[i] : 1;
      if (columns == 0) m->at = AT_UNKNOWN;
      else if (follows) { m->at = AT_COLUMNS; m->at_left = columns; }
      else m->at = m->deprecate_eof ? AT_ROWS : AT_UNKNOWN;
      return;
    }
    case AT_COLUMNS:
      if (err) { m->at = AT_IDLE; return; }
      if (m->at_left > 1) { m->at_left--; return; }
      m->at = m->deprecate_eof ? AT_ROWS : AT_EOF;
      return;
    case AT_EOF:
      if (err) { m->at = AT_IDLE; return; }
      if (!my_is_eof(m, h, n, length)) { m->at = AT_UNKNOWN; return; }
      m->at = (n >= 5 ? h[3] | h[4] << 8 : 0) & 0x0040 /* SERVER_STATUS_CURSOR_EXISTS */ ? AT_IDLE : AT_ROWS;
      return;
    case AT_ROWS:
      if (progress) return;
      if (err) { m->at = AT_IDLE; return; }
      if (my_is_eof(m, h, n, length)) my_after_status(m, m->deprecate_eof ? my_ok_status(h, n) : n >= 5 ? h[3] | h[4] << 8 : 0);
      return;
    case AT_FIELD_LIST:
      if (err || my_is_eof(m, h, n, length)) m->at = AT_IDLE;
      return;
    case AT_PREPARE: {
      if (err) { m->at = AT_IDLE; return; }
      if (n < 9 || h[0] != 0x00) { m->at = AT_UNKNOWN; return; }
      uint32_t columns = h[5] | h[6] << 8, params = h[7] | h[8] << 8, eof = m->deprecate_eof ? 0 : 1;
      uint64_t left = (params ? params + eof : 0) + (columns ? columns + eof : 0);
      if (left) { m->at = AT_DEFINITIONS; m->at_left = left; } else m->at = AT_IDLE;
      return;
    }
    case AT_DEFINITIONS:
      if (m->at_left > 1) m->at_left--; else m->at = AT_IDLE;
      return;
  }
}

static void my_packet(my_state *m, const uint8_t *h, uint32_t n, uint32_t length) {
  my_step(m, h, n, length);
  my_next(m);
}

static void my_packet_start(my_state *m, uint32_t len, uint8_t seq) {
  if (!m->d_cont) {
    m->head_have = 0;
    m->head_want = len < MY_HEAD ? len : MY_HEAD;
    m->first_len = len;
  }
  m->d_cont = len == MY_PHYSICAL;
  m->d_last_seq = seq;
  m->d_left = len;
  if (len == 0 && !m->d_cont) my_packet(m, m->head, m->head_have, m->first_len);
}

static int my_down_boundary(my_state *m) { return m->d_left == 0 && m->dh_len == 0 && !m->d_cont; }

/* Walks the target's bytes; with `stop`, returns at the first end of a logical packet. */
static size_t my_down(my_state *m, const uint8_t *p, size_t n, int stop) {
  size_t i = 0;
  if (n > 0) m->server_spoke = 1;
  while (i < n) {
    if (m->d_left > 0) {
      size_t take = m->d_left < n - i ? m->d_left : n - i;
      if (m->head_have < m->head_want) {
        size_t c = m->head_want - m->head_have < take ? m->head_want - m->head_have : take;
        memcpy(m->head + m->head_have, p + i, c);
        m->head_have += (uint32_t)c;
      }
      m->d_left -= (uint32_t)take;
      i += take;
      if (m->d_left == 0 && !m->d_cont) {
        my_packet(m, m->head, m->head_have, m->first_len);
        if (stop) return i;
      }
      continue;
    }
    while (m->dh_len < 4 && i < n) m->dh[m->dh_len++] = p[i++];
    if (m->dh_len < 4) break;
    m->dh_len = 0;
    my_packet_start(m, (uint32_t)m->dh[0] | (uint32_t)m->dh[1] << 8 | (uint32_t)m->dh[2] << 16, m->dh[3]);
    if (stop && my_down_boundary(m)) return i;
  }
  return i;
}

/* Whether a statement's text may begin with KILL: only text whose first word visibly starts
 * with another letter passes at once; anything else (a comment, a quote, k) is held for
 * JavaScript's lexer (kill.ts), as relay.ts holds every statement. */
static int my_maybe_kill(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  if (i == n) return 1;
  uint8_t c = s[i] | 0x20;
  return !(c >= 'a' && c <= 'z' && c != 'k');
}

static void my_statement_done(relay *r) {
  my_state *m = r->my;
  statement_up(r, m->cap_cmd, m->cap_trunc, m->cap, m->cap_len);
  m->cap = NULL;
  m->cap_len = m->cap_want = 0;
}

static void my_capture(relay *r, const uint8_t *p, size_t take) {
  my_state *m = r->my;
  if (m->cap_skip > 0) {
    size_t s = (size_t)m->cap_skip < take ? (size_t)m->cap_skip : take;
    m->cap_skip -= (int)s;
    p += s;
    take -= s;
    if (m->cap_skip > 0) return;
  }
  size_t c = m->cap_want - m->cap_len < take ? m->cap_want - m->cap_len : take;
  memcpy(m->cap + m->cap_len, p, c);
  m->cap_len += (uint32_t)c;
  if (m->cap_len >= m->cap_want) my_statement_done(r);
}

/* Bytes for the target, counted; a failed write is noted for the caller. */
static void my_out(relay *r, const uint8_t *p, size_t n) {
  if (n == 0) return;
  r->bytes_in += n;
  if (send_out(r->target, p, n) < 0) r->my->out_failed = 1;
}

static void my_stash(my_state *m, const uint8_t *p, size_t n) {
  if (n == 0) return;
  m->stash = realloc(m->stash, m->stash_len + n);
  memcpy(m->stash + m->stash_len, p, n);
  m->stash_len += n;
}

static void my_held_ready(relay *r, int complete) {
  my_state *m = r->my;
  m->hold = HOLD_WAITING;
  evt *v = emit(EV_HELD, r->client->id, 1);
  v->a = complete;
  v->c = m->held_cmd;
  v->data = m->held;
  v->len = m->held_len;
  m->held = NULL;
  m->held_len = 0;
}

/* The gateway's answer in the server's place, after the client's last packet. */
static void my_answer(relay *r) {
  my_state *m = r->my;
  uint8_t seq = (uint8_t)(m->u_last_seq + 1);
  size_t n = m->answer_len;
  r->notices = realloc(r->notices, r->notices_len + 4 + n);
  uint8_t *h = r->notices + r->notices_len;
  h[0] = n & 0xff; h[1] = n >> 8 & 0xff; h[2] = n >> 16 & 0xff; h[3] = seq;
  memcpy(h + 4, m->answer, n);
  r->notices_len += 4 + n;
  free(m->answer);
  m->answer = NULL;
  m->answer_len = 0;
  m->server_spoke = 1;
  m->d_last_seq = seq;
}

/* The target owes nothing the gateway's answer could cut into: its reply to what went before is
 * complete, or not followed (then a packet boundary is the best there is), or it waits for the
 * client (LOCAL INFILE: waiting for the tracker would wait forever). */
static int my_settled(my_state *m) {
  return (m->at == AT_IDLE || m->at == AT_UNKNOWN || m->at == AT_INFILE) && my_down_boundary(m);
}

/* A refused command's ERR: now, or once the target has settled. */
static void my_answer_when_settled(relay *r) {
  my_state *m = r->my;
  if (my_settled(m)) { m->hold = HOLD_NONE; my_answer(r); }
  else m->hold = HOLD_ANSWERING;
}

/* Client input stops at a held command until JavaScript has judged it and its answer is out. */
static int my_stopped(my_state *m) { return m->hold == HOLD_WAITING || m->hold == HOLD_ANSWERING; }

/*
 * Walks the client's bytes (relay.ts's ClientFramer): passes on what may go, holds a command
 * that may be a KILL (its bytes, and what follows them, wait for JavaScript), and stops at a
 * command the gateway refuses. Returns 0, or -1 with `why` set for a refusal (what came before
 * the refused packet has gone to the target).
 */
static int my_up(relay *r, const uint8_t *in, size_t n, const char **why) {
  my_state *m = r->my;
  uint8_t *joined = NULL;
  const uint8_t *p = in;
  if (m->uh_len > 0) {
    joined = malloc((size_t)m->uh_len + n);
    memcpy(joined, m->uh, (size_t)m->uh_len);
    memcpy(joined + m->uh_len, in, n);
    p = joined;
    n += (size_t)m->uh_len;
    m->uh_len = 0;
  }
  size_t i = 0, run = 0;
  int rc = 0;
#define MY_PASS(to) do { my_out(r, p + run, (to) - run); run = (to); } while (0)
  while (i < n) {
    if (my_stopped(m)) break;
    if (m->u_left > 0) {
      size_t take = m->u_left < n - i ? m->u_left : n - i;
      if (m->hold == HOLD_READING) {
        size_t room = m->hold_limit + 1 - (m->held_len - 4);
        if (take > room) take = room;
      }
      if (m->cap) my_capture(r, p + i, take);
      if (m->hold == HOLD_READING) {
        m->held = realloc(m->held, m->held_len + take);
        memcpy(m->held + m->held_len, p + i, take);
        m->held_len += take;
      }
      m->u_left -= (uint32_t)take;
      i += take;
      if (m->hold == HOLD_DROPPING) {
        run = i;
        if (m->u_left == 0 && !m->u_cont) my_answer_when_settled(r);
      } else if (m->hold == HOLD_READING) {
        run = i;
        if (m->u_left == 0 && !m->u_cont) my_held_ready(r, 1);
        else if (m->held_len - 4 > m->hold_limit) my_held_ready(r, 0);
      }
      continue;
    }
    if (n - i < 4) { MY_PASS(i); memcpy(m->uh, p + i, n - i); m->uh_len = (int)(n - i); i = run = n; break; }
    uint32_t len = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16;
    uint8_t seq = p[i + 3];
    /* LOAD DATA LOCAL INFILE: the client's packets wrap from 255 to 0 with no reply between. */
    int command = !m->u_cont && seq == 0 && !(m->u_last_seq == 255 && !m->server_spoke);
    if (command && len > 0 && n - i < 5) { MY_PASS(i); memcpy(m->uh, p + i, n - i); m->uh_len = (int)(n - i); i = run = n; break; }
    int after_whole = !m->u_cont;
    m->u_logical = m->u_cont ? m->u_logical + len : len;
    if (m->u_logical > m->max_packet) { MY_PASS(i); m->refuse_seq = (uint8_t)(seq + 1); *why = "too_large"; rc = -1; break; }
    m->u_cont = len == MY_PHYSICAL;
    m->u_last_seq = seq;
    m->server_spoke = 0;
    size_t header = i;
    i += 4;
    m->u_left = len;
    if (m->hold == HOLD_DROPPING) {
      /* A refused command's continuation: its header is dropped too. */
      MY_PASS(header);
      run = i;
      if (len == 0 && !m->u_cont) my_answer_when_settled(r);
      continue;
    }
    /* LOCAL INFILE: the client's empty packet ends the file; the target's OK or ERR comes next. */
    if (len == 0 && after_whole && m->at == AT_INFILE) m->at = AT_FIRST;
    if (!command || len == 0) continue;
    uint8_t cmd = p[i];
    if (cmd == MY_CHANGE_USER) {
      /* Not a byte of it reaches the target. */
      MY_PASS(header);
      m->u_left = 0;
      m->u_cont = 0;
      m->refuse_seq = (uint8_t)(seq + 1);
      *why = "change_user";
      rc = -1;
      break;
    }
    if (cmd == MY_QUIT) r->terminated = 1;
    int statement = cmd == MY_QUERY || cmd == MY_PREPARE;
    if (statement && r->capture) {
      uint32_t body = len - 1;
      free(m->cap);
      m->cap_cmd = cmd;
      m->cap_want = body < r->limit ? body : r->limit;
      m->cap_trunc = body > r->limit || m->u_cont;
      m->cap_skip = 1;
      m->cap_len = 0;
      m->cap = malloc(m->cap_want ? m->cap_want : 1);
      if (m->cap_want == 0) { m->cap_skip = 0; my_statement_done(r); }
    }
    size_t have = n - i - 1 < len - 1 ? n - i - 1 : len - 1;
    if (cmd == MY_PROCESS_KILL || (statement && my_maybe_kill(p + i + 1, have))) {
      MY_PASS(header);
      m->hold = HOLD_READING;
      m->held_cmd = cmd;
      m->held = malloc(4 + 64);
      memcpy(m->held, p + header, 4);
      m->held_len = 4;
      run = i;
    } else my_command(m, cmd);
  }
  if (rc == 0) {
    MY_PASS(i);
    if (my_stopped(m)) my_stash(m, p + i, n - i);
  }
#undef MY_PASS
  free(joined);
  return rc;
}

/* Everything sent to the target ends where a packet ends (a held or refused one was not sent). */
static int my_forwarded_whole(my_state *m) { return m->hold != HOLD_NONE || (m->u_left == 0 && !m->u_cont); }

/* ---- relays ---- */

static relay *moved_head;
static long long bytes_due;
/* Relays finished in this turn of the loop, freed at its end: callers of pump() test
 * r->finished after it, and finish() may have run inside. */
static relay *dead_relays;

static void counted(relay *r) {
  if (r->moved) return;
  r->moved = 1;
  if (!moved_head) bytes_due = now_ns() + BYTES_EVERY_NS;
  r->moved_next = moved_head;
  moved_head = r;
}

static void unmove(relay *r) {
  if (!r->moved) return;
  relay **p = &moved_head;
  while (*p && *p != r) p = &(*p)->moved_next;
  if (*p) *p = r->moved_next;
  r->moved = 0;
}

static void update(ep *e);

/* Between two messages (PostgreSQL) or two logical packets (MySQL) of the target's stream:
 * where the gateway's own words may go in. */
static int down_boundary(relay *r) { return r->my ? my_down_boundary(r->my) : at_boundary(&r->down); }

/* A MySQL target leg the relay is done with: our side ends (close_notify, FIN) after what is
 * queued, and the target has MY_RELEASE_NS to close its own before the socket is closed. */
#define MY_RELEASE_NS (10000 * MS)
static void release_target(ep *t) {
  t->ending = 1;
  t->state = ST_LINGER;
  if (flush_out(t) < 0) { free_ep(t); return; }
  set_deadline(t, T_CLOSE, now_ns() + MY_RELEASE_NS);
  update(t);
}

/* The target leg's last word, once the client is gone (see UPSTREAM_GRACE_NS). */
static void terminate_target(ep *t) {
  static const uint8_t X[5] = { 'X', 0, 0, 0, 4 };
  if (t->fd >= 0 && pending_out(t) == 0) {
    if (t->ssl) { ERR_clear_error(); SSL_write(t->ssl, X, 5); SSL_shutdown(t->ssl); }
    else if (t->lean) {
      uint8_t rec[5 + 2 + 3 * OVERHEAD + 8];
      size_t k = seal(t->lean, 23, X, 5, rec), k2 = k ? seal(t->lean, 21, close_notify, 2, rec + k) : 0;
      if (k2 > 0 && send(t->fd, rec, k + k2, MSG_NOSIGNAL) < 0) { /* the target is gone already */ }
    }
    else if (send(t->fd, X, 5, MSG_NOSIGNAL) < 0) { /* the target is gone already */ }
  }
  free_ep(t);
}

/*
 * Ends a relay: the client gets the goodbye (when `goodbye`, one is set, and nothing of the
 * target's is half-written), a close_notify and a FIN, and LINGER_NS to read them; the target
 * leg gets its Terminate UPSTREAM_GRACE_NS after the client's close. JavaScript hears how it
 * ended, with the final counts and whether the target may still be running a statement.
 */
static void finish(relay *r, int how, int goodbye, const char *why) {
  if (r->finished) return;
  r->finished = 1;
  ep *c = r->client, *t = r->target;
  evt *v = emit(EV_END, c->id, 1);
  v->a = how;
  v->b = (double)r->bytes_in;
  v->c = (double)r->bytes_out;
  /* MySQL, a teardown: the target owes a reply (1: JavaScript ends its thread from a second
   * login), or gets COM_QUIT (0), or neither (2: a packet half sent; its socket closes). */
  int my_quit = r->my && (how == END_TEARDOWN || how == END_VIOLATION) && r->my->at == AT_IDLE && my_forwarded_whole(r->my);
  v->d = r->my ? (r->my->at != AT_IDLE ? 1 : my_quit ? 0 : 2) : r->awaiting > 0 || !at_boundary(&r->down);
  if (why) v->text = strdup(why);
  /* Statements waiting for a batch go up before the client can see its socket close (a client
   * that ends and then asks for the audit finds them there). Without any, the end waits for the
   * turn's batch: a mass teardown's thousand ends reach JavaScript in one call, and the broker
   * writes their records in one batch. */
  if (events_statements > 0) flush_events(1);
  unmove(r);
  c->r = NULL;
  if (t) t->r = NULL;
  int client_open = how != END_CLIENT_CLOSED && c->fd >= 0;
  if (client_open) {
    if (goodbye && r->goodbye && down_boundary(r)) {
      if (r->my) {
        /* The gateway's answers first; the ERR goes after the last packet either side sent. */
        my_state *m = r->my;
        queue_out(c, r->notices, r->notices_len);
        uint8_t seq = how == END_VIOLATION && m->refuse_seq >= 0 ? (uint8_t)m->refuse_seq
          : (uint8_t)((m->server_spoke ? m->d_last_seq : m->u_last_seq) + 1);
        size_t n = r->goodbye_len;
        uint8_t h[4] = { n & 0xff, n >> 8 & 0xff, n >> 16 & 0xff, seq };
        queue_out(c, h, 4);
      }
      queue_out(c, r->goodbye, r->goodbye_len);
    }
    c->ending = 1;
    c->state = ST_LINGER;
    if (flush_out(c) < 0) client_open = 0;
  }
  if (client_open) {
    set_deadline(c, T_CLOSE, now_ns() + LINGER_NS);
    update(c);
  } else free_ep(c);
  if (t && r->my) {
    /* relay.ts's MysqlSession.stopUpstream: an idle target gets COM_QUIT and closes as it would
     * for any client; one still busy, or with a packet half sent, is cut off. A client that
     * left leaves the target to see what it would see from that client directly. */
    static const uint8_t QUIT[5] = { 1, 0, 0, 0, MY_QUIT };
    if (how == END_TARGET_CLOSED || how == END_TARGET_BROKE) free_ep(t);
    else if (how == END_CLIENT_CLOSED) release_target(t);
    else if (my_quit) { queue_out(t, QUIT, 5); release_target(t); }
    else free_ep(t);
  } else if (t) {
    if (how == END_TARGET_CLOSED || how == END_TARGET_BROKE) free_ep(t);
    else if (!client_open) terminate_target(t);
    else {
      /* Kept, unread, until the client's socket has closed. */
      t->state = ST_LINGER;
      if (t->registered) { epoll_ctl(epfd, EPOLL_CTL_DEL, t->fd, NULL); t->registered = 0; }
      /* What epoll reported for it in the batch being handled is stale now: on_linger would
       * read it as a lingering client and register it again, and a target that then hangs up
       * is freed while c->kept still points at it (close_linger: use after free, double free). */
      forget_ready(t);
      c->kept = t;
    }
  }
  free(r->goodbye);
  free(r->notices);
  free(r->up.cap);
  free(r->down.cap);
  r->goodbye = r->notices = r->up.cap = r->down.cap = NULL;
  my_free(r);
  r->moved_next = dead_relays;
  dead_relays = r;
}

/* A lingering client is closed; the target leg it kept waits UPSTREAM_GRACE_NS more. */
static void close_linger(ep *c) {
  ep *t = c->kept;
  c->kept = NULL;
  free_ep(c);
  if (t) set_deadline(t, T_TERMINATE, now_ns() + UPSTREAM_GRACE_NS);
}

static void queue_notices(relay *r) {
  if (r->notices_len == 0 || !down_boundary(r)) return;
  queue_out(r->client, r->notices, r->notices_len);
  free(r->notices);
  r->notices = NULL;
  r->notices_len = 0;
}

/* Moves what `from` has to the other side; returns -1 when `from` is closed or failed (its
 * side's end), -2 when the other side failed, 0 otherwise (the relay may have finished). */
/* Plaintext reads of one readiness, at most: a fast plaintext target must not hold the thread
 * from every other session (a TLS leg stops by itself once OpenSSL's read-ahead is used up). */
#define PLAIN_READS 16

/* The client is not read: a teardown, a refusal or a held command waits, or the audit is behind. */
static int client_held(relay *r) {
  return r->closing || r->broke || r->unaudited >= MAX_UNAUDITED || (r->my && my_stopped(r->my));
}

/* A refused client command (my_up): JavaScript audits it and answers with the ERR (a
 * teardown with `now`). */
static void my_refused(relay *r, const char *why) {
  r->broke = 1;
  emit(EV_BROKE, r->client->id, 1)->text = strdup(why);
}

/* One read of a MySQL relay: framed and passed on (pump's steps for PostgreSQL); 0, or -2
 * when the other side failed. */
static int my_pump(relay *r, int up, const uint8_t *p, size_t n) {
  counted(r);
  if (up) {
    const char *why = NULL;
    r->my->out_failed = 0;
    int rc = my_up(r, p, n, &why);
    if (r->my->out_failed) return -2;
    if (rc < 0) my_refused(r, why);
    /* A refused KILL's answer, once the target is between packets. */
    if (r->notices_len > 0 && down_boundary(r)) {
      queue_notices(r);
      if (flush_out(r->client) < 0) return -1;
    }
    return 0;
  }
  my_down(r->my, p, n, 0);
  r->bytes_out += n;
  return send_out(r->client, p, n) < 0 ? -2 : 0;
}

static void my_resume(relay *r);

static int pump(ep *from) {
  relay *r = from->r;
  int up = from == r->client;
  ep *to = up ? r->target : r->client;
  int reads = 0;
  while (pending_out(to) == 0 && !r->finished) {
    if (up && client_held(r)) return 0;
    int n = ep_read(from, readbuf, BUF);
    if (n == 0) break;
    if (n < 0) return -1;
    int32_t bad = 0;
    if (!up && r->closing) {
      /* Tearing down: only the rest of the message in flight, then the goodbye. */
      long k = r->my ? (long)my_down(r->my, readbuf, (size_t)n, 1) : frame(r, 0, readbuf, (size_t)n, 1, &bad);
      if (k < 0) { finish(r, END_TEARDOWN, 0, NULL); return 0; }
      r->bytes_out += (uint64_t)n;
      queue_out(to, readbuf, (size_t)k);
      if (down_boundary(r)) { finish(r, END_TEARDOWN, 1, NULL); return 0; }
      if (flush_out(to) < 0) return -2;
      continue;
    }
    if (r->my) {
      int f = my_pump(r, up, readbuf, (size_t)n);
      if (f != 0 || r->finished) return f;
    } else if (frame(r, up, readbuf, (size_t)n, 0, &bad) < 0) {
      char why[64];
      snprintf(why, sizeof why, "invalid message length %d", bad);
      if (up) {
        /* JavaScript answers with the ErrorResponse (a teardown with `now`). */
        r->broke = 1;
        evt *v = emit(EV_BROKE, r->client->id, 1);
        v->text = strdup(why);
        return 0;
      }
      finish(r, END_TARGET_BROKE, 0, why);
      return 0;
    }
    if (!r->my) {
      if (up) r->bytes_in += (uint64_t)n; else r->bytes_out += (uint64_t)n;
      counted(r);
      if (send_out(to, readbuf, (size_t)n) < 0) return -2;
    }
    if (!up && r->notices_len > 0 && down_boundary(r)) {
      queue_notices(r);
      if (flush_out(to) < 0) return -2;
    }
    /* A leg whose hand-over waited for a record to be read whole goes lean now. */
    if (from->lean_wanted) try_lean(from);
    /* A lean leg opens the whole records it holds before it counts as a read of the socket. */
    if (!ep_more(from, n) || (!from->ssl && !lean_held(from) && ++reads >= PLAIN_READS)) break;
  }
  /* A refused command's ERR waited for the target's reply to what the client sent before it. */
  if (!up && r->my && r->my->hold == HOLD_ANSWERING && !r->closing && !r->broke && my_settled(r->my)) {
    r->my->hold = HOLD_NONE;
    my_answer(r);
    r->my->out_failed = 0;
    my_resume(r);
  }
  return 0;
}

static void side_closed(relay *r, ep *which) {
  /* A lean leg that failed its TLS says why (the session ends with an error, not a close). */
  const char *why = which->lean ? which->lean->failed : NULL;
  if (which == r->client) finish(r, END_CLIENT_CLOSED, 0, why);
  else finish(r, r->terminated && !why ? END_CLIENT_CLOSED : END_TARGET_CLOSED, 0, why);
}

/* ---- interest ---- */

static void update(ep *e) {
  if (e->fd < 0) return;
  uint32_t ev = 0;
  switch (e->state) {
    case ST_HANDSHAKE:
      ev = e->ssl_read_wants_write ? EPOLLOUT : EPOLLIN;
      break;
    case ST_OPEN:
      if ((e->reading && e->unacked < LOGIN_WINDOW) || e->ssl_write_wants_read) ev |= EPOLLIN;
      if ((pending_out(e) && !e->ssl_write_wants_read) || e->ssl_read_wants_write) ev |= EPOLLOUT;
      break;
    case ST_RELAY: {
      relay *r = e->r;
      int up = e == r->client;
      ep *other = up ? r->target : r->client;
      int may_read = pending_out(other) == 0 && !(up && client_held(r));
      if (may_read || e->ssl_write_wants_read) ev |= EPOLLIN;
      /* Not read while a refused command's answer waits, but its hanging up is seen. */
      else if (up && r->my && r->my->hold == HOLD_ANSWERING) ev |= EPOLLRDHUP;
      if ((pending_out(e) && !e->ssl_write_wants_read) || e->ssl_read_wants_write) ev |= EPOLLOUT;
      break;
    }
    case ST_LINGER:
      ev = EPOLLIN;
      if (pending_out(e) && !e->ssl_write_wants_read) ev |= EPOLLOUT;
      break;
  }
  /* A handshake reuses ssl_read_wants_write for "wants to write". */
  set_events(e, ev);
}

static void update_relay(relay *r) {
  if (r->finished) return;
  update(r->client);
  update(r->target);
}

/* ---- readiness ---- */

/* Node's names for the verify results (tls.TLSSocket#authorizationError), so a refusal reads
 * the same whichever data path reached the target. */
static const char *verify_code(long v) {
  switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: return "UNABLE_TO_GET_ISSUER_CERT";
    case X509_V_ERR_UNABLE_TO_GET_CRL: return "UNABLE_TO_GET_CRL";
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE: return "UNABLE_TO_DECRYPT_CERT_SIGNATURE";
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: return "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return "CERT_SIGNATURE_FAILURE";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "CERT_NOT_YET_VALID";
    case X509_V_ERR_CERT_HAS_EXPIRED: return "CERT_HAS_EXPIRED";
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD: return "ERROR_IN_CERT_NOT_BEFORE_FIELD";
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD: return "ERROR_IN_CERT_NOT_AFTER_FIELD";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return "DEPTH_ZERO_SELF_SIGNED_CERT";
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return "SELF_SIGNED_CERT_IN_CHAIN";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: return "UNABLE_TO_GET_ISSUER_CERT_LOCALLY";
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: return "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG: return "CERT_CHAIN_TOO_LONG";
    case X509_V_ERR_CERT_REVOKED: return "CERT_REVOKED";
    case X509_V_ERR_INVALID_CA: return "INVALID_CA";
    case X509_V_ERR_PATH_LENGTH_EXCEEDED: return "PATH_LENGTH_EXCEEDED";
    case X509_V_ERR_INVALID_PURPOSE: return "INVALID_PURPOSE";
    case X509_V_ERR_CERT_UNTRUSTED: return "CERT_UNTRUSTED";
    case X509_V_ERR_CERT_REJECTED: return "CERT_REJECTED";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH: return "ERR_TLS_CERT_ALTNAME_INVALID";
    default: return "UNSPECIFIED";
  }
}

static void handshake_done(ep *e) {
  e->state = ST_OPEN;
  /* The application traffic keys start here, at record 0 each way but for a server's session
   * tickets (on_record). */
  if (e->keys) {
    e->keys->counting = 1;
    e->keys->rx = 0;
    e->keys->read_base = BIO_number_read(SSL_get_rbio(e->ssl));
    e->keys->read_whole = 0;
  }
  evt *v = emit(EV_READY, e->id, 1);
  if (e->role == ROLE_CLIENT) {
    v->b = SSL_session_reused(e->ssl);
    X509 *cert = SSL_get1_peer_certificate(e->ssl);
    long verify = SSL_get_verify_result(e->ssl);
    v->a = cert != NULL && verify == X509_V_OK;
    if (cert == NULL) v->text = strdup("the target presented no TLS certificate");
    else if (verify != X509_V_OK) v->text = strdup(verify_code(verify));
    if (cert) {
      unsigned char md[EVP_MAX_MD_SIZE]; unsigned int len = 0;
      X509_digest(cert, EVP_sha256(), md, &len);
      v->data = copy(md, len);
      v->len = len;
      X509_free(cert);
    }
  }
}

/* Returns -1 when the handshake failed and `e` was freed. */
static int on_handshake(ep *e) {
  ERR_clear_error();
  int r = SSL_do_handshake(e->ssl);
  if (r == 1) {
    e->ssl_read_wants_write = 0;
    handshake_done(e);
    return 0;
  }
  int err = SSL_get_error(e->ssl, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    e->ssl_read_wants_write = err == SSL_ERROR_WANT_WRITE;
    return 0;
  }
  close_ep(e, ssl_failure(e));
  return -1;
}

/* Login: everything read goes up; returns -1 when the endpoint was freed. */
static int on_open(ep *e, uint32_t ev) {
  if ((ev & EPOLLOUT) || e->ssl_write_wants_read) {
    if (flush_out(e) < 0) { close_ep(e, "write failed"); return -1; }
  }
  if (!e->reading || e->unacked >= LOGIN_WINDOW) {
    /* Stopped for a splice, or JavaScript has not taken what went up (backpressure), and gone
     * meanwhile: reported at every wait, so it closes now. */
    if (ev & (EPOLLERR | EPOLLHUP)) { close_ep(e, "connection closed"); return -1; }
    return 0;
  }
  uint8_t *buf = e->poll ? login_buf : readbuf;
  while (e->unacked < LOGIN_WINDOW) {
    int n = ep_read(e, buf, BUF);
    if (n == 0) return 0;
    if (n < 0) { close_ep(e, NULL); return -1; }
    evt *v = emit(EV_DATA, e->id, 1);
    v->data = copy(buf, (size_t)n);
    v->len = (size_t)n;
    e->unacked += (size_t)n;
    if (!ep_more(e, n)) return 0;
  }
  return 0;
}

static void on_linger(ep *e, uint32_t ev) {
  if (ev & EPOLLOUT) {
    if (flush_out(e) < 0) { close_linger(e); return; }
  }
  /* Whatever the client still sends is read and dropped, so the close is a FIN, not a reset. */
  for (;;) {
    int n = ep_read(e, readbuf, BUF);
    if (n < 0) { close_linger(e); return; }
    if (n == 0 || !ep_more(e, n)) break;
  }
  update(e);
}

static void on_ready(ep *e, uint32_t ev) {
  switch (e->state) {
    case ST_HANDSHAKE:
      /* Failed: `e` is freed (its id too: lookup(e->id) would read freed memory). */
      if (on_handshake(e) < 0) return;
      if (e->state == ST_OPEN) {
        /* Records that came with the handshake's last flight may already sit in OpenSSL. */
        if (on_open(e, EPOLLIN | EPOLLOUT) < 0) return;
      }
      update(e);
      return;
    case ST_OPEN:
      if (on_open(e, ev) == 0) update(e);
      return;
    case ST_LINGER:
      on_linger(e, ev);
      return;
    case ST_RELAY: {
      relay *r = e->r;
      int up = e == r->client;
      ep *other = up ? r->target : r->client;
      int retry_read = e->ssl_read_wants_write && (ev & EPOLLOUT);
      if ((ev & EPOLLOUT) || e->ssl_write_wants_read) {
        int f = flush_out(e);
        if (f < 0) { side_closed(r, e); return; }
        /* Room again: what the other side has waiting can come now. */
        if (f == 0) {
          int p = pump(other);
          if (r->finished) return;
          if (p == -1) { side_closed(r, other); return; }
          if (p == -2) { side_closed(r, e); return; }
        }
      }
      if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) || retry_read) {
        int p = pump(e);
        if (r->finished) return;
        if (p == -1) { side_closed(r, e); return; }
        if (p == -2) { side_closed(r, other); return; }
      }
      /* Hung up or failed, with nothing more this side may read now (the other side is full,
       * or a teardown stopped the client's input): reported at every wait, so it ends here. A
       * client whose refused command's answer waits for the target ends here too once it has
       * shut down its side: waiting for the target would leave the session open until then. */
      if (ev & (EPOLLHUP | EPOLLERR)) { side_closed(r, e); return; }
      if ((ev & EPOLLRDHUP) && up && r->my && r->my->hold == HOLD_ANSWERING) { side_closed(r, e); return; }
      update_relay(r);
      return;
    }
  }
}

static void on_deadline(ep *e) {
  int timer = e->timer;
  clear_deadline(e);
  switch (timer) {
    case T_BOUNDARY:
      if (e->r) finish(e->r, END_TEARDOWN, 0, NULL);
      return;
    case T_CLOSE:
      close_linger(e);
      return;
    case T_TERMINATE:
      terminate_target(e);
      return;
  }
}

/* ---- commands ---- */

static void start_teardown(relay *r, uint8_t *goodbye, size_t len, int now) {
  if (r->finished || (r->closing && !now)) { free(goodbye); return; }
  free(r->goodbye);
  r->goodbye = goodbye;
  r->goodbye_len = len;
  /* The counts as they stand now: the broker records them with the session's end. */
  evt *v = emit(EV_COUNTS, r->client->id, 1);
  v->b = (double)r->bytes_in;
  v->c = (double)r->bytes_out;
  if (now) { finish(r, END_VIOLATION, 1, NULL); return; }
  r->closing = 1;
  if (down_boundary(r)) { finish(r, END_TEARDOWN, 1, NULL); return; }
  set_deadline(r->client, T_BOUNDARY, now_ns() + BOUNDARY_WAIT_NS);
  update_relay(r);
}


static void free_cmd(cmd *c) {
  free(c->data);
  free(c->data2);
  free(c->data3);
  free(c);
}

/* On the JavaScript thread: the endpoint joins Node's loop, and a handshake that can starts. */
static void open_ep(ep *e) {
  __atomic_add_fetch(&opened_pending, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&live_endpoints, 1, __ATOMIC_RELAXED);
  link_ep(e);
  if (e->out_len > 0) {
    /* The one byte answering the client's SSLRequest, before its TLS: sent as it is. */
    ssize_t w = send(e->fd, e->out, e->out_len, MSG_NOSIGNAL);
    free(e->out);
    e->out = NULL;
    e->out_len = e->out_cap = 0;
    if (w < 1) { close_ep(e, "connection reset"); return; }
  }
  /* A client handshake speaks first; a server one that has the client's hello already answers
   * it. Either may finish here, its peer's flight read already, with records behind it held in
   * the socket's BIO, where no poll finds them: on as at any step of the handshake. */
  if (e->role == ROLE_CLIENT || (e->ssl && sock_held(e->ssl) > 0)) { on_ready(e, 0); return; }
  update(e);
}

/*
 * The target hung up behind its login, before the relay could start (its last words, a FATAL
 * say, came with its login or just after it, and are in what JavaScript read: c->data3). The
 * client still gets the greeting and those words, as if relayed, and the session ends as the
 * target's doing; a bare close would leave the client guessing.
 */
static void target_gone(ep *cl, cmd *c) {
  relay *r = calloc(1, sizeof *r);
  r->client = cl;
  cl->r = r;
  cl->state = ST_RELAY;
  cl->reading = 0;
  keep_openssl(cl);
  queue_out(cl, c->data, c->len);
  r->bytes_out = c->len3;
  queue_out(cl, c->data3, c->len3);
  finish(r, END_TARGET_CLOSED, 0, NULL);
}

static void splice_now(cmd *c) {
  /* The legs the JavaScript thread handed over join this thread's table (their epoll
   * registration comes with their first update). */
  if (c->client) link_ep(c->client);
  if (c->target) link_ep(c->target);
  c->client = c->target = NULL;
  ep *cl = lookup(c->id), *t = lookup(c->id2);
  if (cl && (cl->state != ST_OPEN || cl->r)) cl = NULL;
  if (t && (t->state != ST_OPEN || t->r)) t = NULL;
  if (cl && !t) { target_gone(cl, c); return; }
  if (!cl) {
    emit(EV_END, c->id, 1)->a = END_CLIENT_CLOSED;
    /* A MySQL target sees what it would see from that client directly (finish's
     * END_CLIENT_CLOSED): our FIN, not PostgreSQL's Terminate. */
    if (t && c->mysql) release_target(t);
    else if (t) terminate_target(t);
    return;
  }
  relay *r = c->mysql ? my_relay_new(c->max_packet, c->deprecate_eof, c->cache_metadata, c->hold_limit) : calloc(1, sizeof *r);
  r->client = cl;
  r->target = t;
  r->limit = c->limit;
  r->capture = c->flag;
  cl->r = t->r = r;
  cl->state = t->state = ST_RELAY;
  cl->reading = t->reading = 0;
  /* Each TLS leg goes lean now, or once OpenSSL has sent what it holds (flush_out). */
  cl->lean_wanted = cl->ssl != NULL && c->flag2;
  t->lean_wanted = t->ssl != NULL && c->flag2;
  if (cl->lean_wanted) try_lean(cl); else keep_openssl(cl);
  if (t->lean_wanted) try_lean(t); else keep_openssl(t);
  queue_out(cl, c->data, c->len);
  int32_t bad = 0;
  if (r->my) {
    /* What each side sent behind its login, framed as if just read. */
    if (c->len3 > 0) {
      my_down(r->my, c->data3, c->len3, 0);
      r->bytes_out += c->len3;
      queue_out(cl, c->data3, c->len3);
    }
    if (c->len2 > 0) {
      const char *why = NULL;
      r->my->out_failed = 0;
      if (my_up(r, c->data2, c->len2, &why) < 0) my_refused(r, why);
      if (r->my->out_failed) { side_closed(r, t); return; }
    }
  } else if (c->len3 > 0) {
    if (frame(r, 0, c->data3, c->len3, 0, &bad) < 0) { finish(r, END_TARGET_BROKE, 0, "invalid message length"); return; }
    r->bytes_out += c->len3;
    queue_out(cl, c->data3, c->len3);
  }
  if (!r->my && c->len2 > 0) {
    if (frame(r, 1, c->data2, c->len2, 0, &bad) < 0) {
      char why[64];
      snprintf(why, sizeof why, "invalid message length %d", bad);
      r->broke = 1;
      emit(EV_BROKE, cl->id, 1)->text = strdup(why);
    } else {
      r->bytes_in += c->len2;
      queue_out(t, c->data2, c->len2);
    }
  }
  if (r->notices_len > 0) queue_notices(r);
  if (flush_out(t) < 0) { side_closed(r, t); return; }
  if (flush_out(cl) < 0) { side_closed(r, cl); return; }
  /* Records OpenSSL read ahead before the splice wake no socket: pumped now. */
  int p = pump(cl);
  if (r->finished) return;
  if (p < 0) { side_closed(r, p == -1 ? cl : t); return; }
  p = pump(t);
  if (r->finished) return;
  if (p < 0) { side_closed(r, p == -1 ? t : cl); return; }
  update_relay(r);
}

static int stopping;

/*
 * JavaScript's verdict on a held MySQL command (EV_HELD): `flag` 0, send `data` to the target
 * (the held bytes as they were, the rest of the packet following; or the KILL rewritten for
 * the caller's own thread); 1, answer the client with `data` (an ERR payload) once the rest of
 * the packet is dropped. The client's bytes read behind it are framed then.
 */
static void my_verdict(ep *e, cmd *c) {
  relay *r = e->r;
  if (!r || !r->my || r->client != e || r->finished || r->my->hold != HOLD_WAITING) return;
  /* Ending (a teardown, a refusal): the held command and what came behind it go nowhere. */
  if (r->closing || r->broke) return;
  my_state *m = r->my;
  m->out_failed = 0;
  if (c->flag == 0) {
    if (c->len > 4) my_command(m, c->data[4]);
    my_out(r, c->data, c->len);
    m->hold = HOLD_NONE;
  } else {
    free(m->answer);
    m->answer = c->data;
    m->answer_len = c->len;
    c->data = NULL;
    if (m->u_left == 0 && !m->u_cont) my_answer_when_settled(r);
    else m->hold = HOLD_DROPPING;
  }
  my_resume(r);
}

/* The client's bytes read behind a held command are framed (unless its answer still waits),
 * what the gateway answered goes out, and the client is read again. */
static void my_resume(relay *r) {
  my_state *m = r->my;
  ep *e = r->client;
  uint8_t *rest = m->stash;
  size_t rest_len = m->stash_len;
  m->stash = NULL;
  m->stash_len = 0;
  const char *why = NULL;
  int rc = rest_len > 0 ? my_up(r, rest, rest_len, &why) : 0;
  free(rest);
  if (m->out_failed) { side_closed(r, r->target); return; }
  if (rc < 0) my_refused(r, why);
  queue_notices(r);
  if (flush_out(r->client) < 0) { side_closed(r, r->client); return; }
  /* What the client sent meanwhile may sit in OpenSSL, where no socket event finds it. */
  int p = pump(e);
  if (r->finished) return;
  if (p < 0) { side_closed(r, p == -1 ? e : r->target); return; }
  update_relay(r);
}

/* A command on one endpoint, on the thread that owns it. */
static void run_on(ep *e, cmd *c) {
  switch (c->kind) {
    case C_WRITE:
      if (e->state != ST_OPEN && e->state != ST_HANDSHAKE) return;
      queue_out(e, c->data, c->len);
      if (e->state == ST_OPEN && flush_out(e) < 0) { close_ep(e, "write failed"); return; }
      update(e);
      return;
    case C_ACK:
      if (e->state != ST_OPEN) return;
      e->unacked = 0;
      /* What OpenSSL read ahead meanwhile wakes no socket: read now. */
      if (e->reading && on_open(e, 0) < 0) return;
      update(e);
      return;
    case C_AUDITED: {
      relay *r = e->r;
      if (!r || r->client != e) return;
      r->unaudited = c->limit >= r->unaudited ? 0 : r->unaudited - c->limit;
      /* What the client sent meanwhile may sit in OpenSSL, where no socket event finds it. */
      int p = pump(e);
      if (r->finished) return;
      if (p < 0) { side_closed(r, p == -1 ? e : r->target); return; }
      update_relay(r);
      return;
    }
    case C_STOP:
      e->reading = 0;
      emit(EV_STOPPED, e->id, 1);
      update(e);
      return;
    case C_END:
      if (e->state != ST_OPEN && e->state != ST_HANDSHAKE) return;
      e->ending = 1;
      if (e->state == ST_OPEN && flush_out(e) < 0) { close_ep(e, "write failed"); return; }
      update(e);
      return;
    case C_CLOSE:
      /* A relay's endpoints belong to it; JavaScript ends a relay with a teardown. */
      if (e->state == ST_RELAY || e->state == ST_LINGER) return;
      free_ep(e);
      return;
    case C_NOTICE: {
      relay *r = e->r;
      if (!r || r->finished || r->closing || r->client != e) return;
      if (r->my) return;
      if (at_boundary(&r->down) && r->notices_len == 0) {
        queue_out(e, c->data, c->len);
        int f = flush_out(e);
        if (f < 0) { side_closed(r, e); return; }
        /* The client's queue may have emptied just now: what OpenSSL read ahead from the target
         * wakes no socket, so it comes now (as after an EPOLLOUT). */
        if (f == 0) {
          int p = pump(r->target);
          if (r->finished) return;
          if (p < 0) { side_closed(r, p == -1 ? r->target : e); return; }
        }
      } else {
        r->notices = realloc(r->notices, r->notices_len + c->len);
        memcpy(r->notices + r->notices_len, c->data, c->len);
        r->notices_len += c->len;
      }
      update_relay(r);
      return;
    }
    case C_VERDICT:
      my_verdict(e, c);
      return;
    case C_TEARDOWN:
      if (!e->r || e->r->client != e) return;
      start_teardown(e->r, c->data, c->len, c->flag);
      c->data = NULL;
      return;
  }
}

static void run(cmd *c) {
  if (c->kind == C_SHUTDOWN) { stopping = 1; return; }
  if (c->kind == C_SPLICE) { splice_now(c); return; }
  ep *e = lookup(c->id);
  if (e) run_on(e, c);
}

/* ---- the loop ---- */

static struct epoll_event ready[256];
static int ready_i, ready_n;
/* An endpoint freed while the batch it is in is being handled: its later entries are dropped. */
static void forget_ready(ep *e) {
  for (int j = 0; j < ready_n; j++)
    if (ready[j].data.ptr == e) ready[j].data.ptr = (void *)1;
}

static void emit_bytes(void) {
  for (relay *r = moved_head; r; r = r->moved_next) {
    evt *v = emit(EV_BYTES, r->client->id, 0);
    v->b = (double)r->bytes_in;
    v->c = (double)r->bytes_out;
    r->moved = 0;
  }
  moved_head = NULL;
}

static void *loop(void *arg) {
  (void)arg;
  while (!stopping) {
    long long wake = 0, now = now_ns();
    for (ep *e = timed_head; e; e = e->tnext) if (wake == 0 || e->deadline < wake) wake = e->deadline;
    if (events_len > 0 && (wake == 0 || events_since + STATEMENT_DELAY_NS < wake)) wake = events_since + STATEMENT_DELAY_NS;
    if (moved_head && (wake == 0 || bytes_due < wake)) wake = bytes_due;
    if (trim_at && (wake == 0 || trim_at < wake)) wake = trim_at;
    int timeout = -1;
    if (wake != 0) timeout = wake <= now ? 0 : (int)((wake - now + MS - 1) / MS);
    ready_n = epoll_wait(epfd, ready, 256, timeout);
    /* Commands first, whatever epoll's order: a warning JavaScript sent before a client's next
     * query reached the socket goes out before that query's answer. */
    for (ready_i = 0; ready_i < ready_n; ready_i++) {
      if (ready[ready_i].data.ptr != NULL) continue;
      ready[ready_i].data.ptr = (void *)1;
      uint64_t v;
      if (read(evfd, &v, sizeof v) < 0) { /* woken already */ }
      pthread_mutex_lock(&lock);
      cmd *c = cmd_head;
      cmd_head = cmd_tail = NULL;
      pthread_mutex_unlock(&lock);
      while (c) {
        cmd *next = c->next;
        run(c);
        free_cmd(c);
        c = next;
      }
    }
    for (ready_i = 0; ready_i < ready_n; ready_i++) {
      void *p = ready[ready_i].data.ptr;
      if (p == (void *)1) continue;
      on_ready(p, ready[ready_i].events);
    }
    ready_n = 0;
    now = now_ns();
    for (ep *e = timed_head; e;) {
      if (e->deadline <= now) { on_deadline(e); e = timed_head; }
      else e = e->tnext;
    }
    if (moved_head && now >= bytes_due) emit_bytes();
    /* A plain load first: the exchange (a locked instruction) only when logins were opened. */
    unsigned opened = __atomic_load_n(&opened_pending, __ATOMIC_RELAXED) ? __atomic_exchange_n(&opened_pending, 0, __ATOMIC_RELAXED) : 0;
    if (opened && (opened_since_trim += opened) >= TRIM_AFTER) trim_at = now + TRIM_QUIET_NS;
    while (dead_relays) {
      relay *next = dead_relays->moved_next;
      free(dead_relays);
      dead_relays = next;
    }
    if (trim_at && now >= trim_at) {
      malloc_trim(0);
      trim_at = 0;
      opened_since_trim = 0;
    }
    flush_events(0);
  }
  flush_events(1);
  return NULL;
}

/* ---- JavaScript ---- */

/* A batch as JavaScript takes it: [kind, id, a, b, c, Buffer | d, text | null] each. */
static napi_value batch_array(napi_env env, batch *b) {
  napi_value arr, nul;
  napi_get_null(env, &nul);
  napi_create_array_with_length(env, b->len, &arr);
  for (size_t i = 0; i < b->len; i++) {
    evt *v = &b->v[i];
    napi_value item, x;
    napi_create_array_with_length(env, 7, &item);
    double nums[5] = { v->kind, v->id, v->a, v->b, v->c };
    for (uint32_t k = 0; k < 5; k++) { napi_create_double(env, nums[k], &x); napi_set_element(env, item, k, x); }
    if (v->data) {
      void *out;
      napi_create_buffer_copy(env, v->len, v->data, &out, &x);
    } else napi_create_double(env, v->d, &x);
    napi_set_element(env, item, 5, x);
    if (v->text) napi_create_string_utf8(env, v->text, NAPI_AUTO_LENGTH, &x);
    else x = nul;
    napi_set_element(env, item, 6, x);
    napi_set_element(env, arr, (uint32_t)i, item);
  }
  return arr;
}

static void deliver(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  batch *b = data;
  if (b->from_js) js_batches_queued--;
  if (env != NULL) {
    napi_value undef, arr = batch_array(env, b);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 1, &arr, NULL);
  }
  free_batch(b);
}

/* ---- the logins, on the JavaScript thread ---- */

/* init's onEvents, for the events the JavaScript thread delivers itself. */
static napi_ref on_events;
static napi_async_context events_context;
/* Runs right after the poll phase of the loop's turn in which poll callbacks emitted events. */
static uv_check_t deliver_check;
static void deliver_now(uv_check_t *h);

/* What this thread emitted goes up through the threadsafe function's queue. */
static void queue_js_events(void) {
  batch *b = take_events();
  if (!b) return;
  b->from_js = 1;
  js_batches_queued++;
  queue_batch(b);
}

/*
 * After each step the JavaScript thread takes on its endpoints: its OpenSSL error queue is
 * Node's too, so it is left empty, and what the step emitted goes up. From poll callbacks
 * (`now`) it is delivered in this turn of the loop, right after the poll phase, all of the
 * turn's in one call (a thousand sockets closing at once are one call, not a thousand), as
 * Node delivers its sockets' data in the same turn; the threadsafe function's queue would cost
 * each event another turn of the loop and an eventfd round trip, four times per MySQL login.
 * Inside a call from JavaScript (write, stop, ack, open) it goes through that queue, as the
 * loop's do, so that no event reaches JavaScript inside its own call; and so does every batch
 * while one of them waits there, to keep each endpoint's events in order.
 */
static void login_step_done(int now) {
  ERR_clear_error();
  if (events_len == 0) return;
  if (!now || js_batches_queued > 0) { queue_js_events(); return; }
  uv_check_start(&deliver_check, deliver_now);
}

static void deliver_now(uv_check_t *h) {
  (void)h;
  uv_check_stop(&deliver_check);
  if (js_batches_queued > 0) { queue_js_events(); return; }
  batch *b = take_events();
  if (!b) return;
  napi_env env = owner_env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, global, arr = batch_array(env, b);
  free_batch(b);
  napi_get_reference_value(env, on_events, &cb);
  /* (napi_make_callback wants an object for `this`.) */
  napi_get_global(env, &global);
  /* A callback scope of its own: the promises the events settle run their continuations
   * before this returns, as after any I/O callback. */
  napi_make_callback(env, events_context, global, cb, 1, &arr, NULL);
  bool thrown = false;
  if (napi_is_exception_pending(env, &thrown) == napi_ok && thrown) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static void on_poll(uv_poll_t *h, int status, int got) {
  ep *e = h->data;
  if (!e) return;
  uint32_t ev = (got & UV_READABLE ? EPOLLIN : 0) | (got & UV_WRITABLE ? EPOLLOUT : 0);
  if (status < 0) {
    /* libuv stopped the handle: the next update starts it again if the endpoint lives on. */
    ev = EPOLLERR | EPOLLIN | EPOLLOUT;
    e->registered = 0;
  } else if (got & (UV_DISCONNECT | UV_PRIORITIZED)) {
    /* The peer's FIN, or the whole connection gone (epoll's EPOLLHUP and EPOLLERR, which libuv
     * folds into these), or urgent data. */
    struct pollfd p = { .fd = e->fd, .events = POLLIN };
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) ev |= EPOLLHUP;
    else if (!(got & UV_DISCONNECT)) {
      /* Urgent data: dropped, as the loop thread, which never asks for it, leaves it (it is not
       * in the stream); read, so that it does not wake this again. */
      uint8_t b;
      if (recv(e->fd, &b, 1, MSG_OOB | MSG_DONTWAIT) < 0) { /* gone already */ }
    } else if (e->fin_seen && e->shut) ev |= EPOLLHUP;
    else e->fin_seen = 1;
  }
  on_ready(e, ev);
  login_step_done(1);
}

static napi_value fail(napi_env env, const char *m) {
  napi_throw_error(env, "GATEHOUSE_NATIVE", m);
  return NULL;
}

static char *get_string(napi_env env, napi_value v) {
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) return NULL;
  char *s = malloc(n + 1);
  napi_get_value_string_utf8(env, v, s, n + 1, &n);
  return s;
}

/* A Buffer argument's bytes, copied (NULL and 0 for null/undefined or an empty buffer). */
static uint8_t *get_bytes(napi_env env, napi_value v, size_t *len) {
  void *d; size_t n = 0;
  *len = 0;
  if (napi_get_buffer_info(env, v, &d, &n) != napi_ok || n == 0) return NULL;
  *len = n;
  return copy(d, n);
}

static void send_cmd(cmd *c) {
  pthread_mutex_lock(&lock);
  if (cmd_tail) cmd_tail->next = c; else cmd_head = c;
  cmd_tail = c;
  pthread_mutex_unlock(&lock);
  uint64_t one = 1;
  if (write(evfd, &one, sizeof one) < 0) { /* the counter is full: the loop is awake anyway */ }
}

static void cleanup(void *arg) {
  (void)arg;
  for (unsigned i = 0; i < BUCKETS; i++) while (login_table[i]) free_ep(login_table[i]);
  /* A Worker's loop must have no handle left open when it closes. */
  uv_close((uv_handle_t *)&deliver_check, NULL);
  napi_delete_reference(owner_env, on_events);
  if (!thread_started) return;
  cmd *c = calloc(1, sizeof *c);
  c->kind = C_SHUTDOWN;
  send_cmd(c);
  pthread_join(thread, NULL);
  thread_started = 0;
}

/* init(onEvents): starts the loop thread; once per process. */
static napi_value init_loop(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return fail(env, "init(onEvents)");
  if (owner_env != NULL) return fail(env, owner_env == env ? "init() was called already" : "the native data path serves one JavaScript thread per process");
  if (napi_create_threadsafe_function(env, argv[0], NULL, argv[0], 0, 1, NULL, NULL, NULL, deliver, &tsfn) != napi_ok) return fail(env, "no threadsafe function");
  napi_value name;
  napi_create_string_utf8(env, "gatehouse.native.events", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[0], 1, &on_events) != napi_ok || napi_async_init(env, NULL, name, &events_context) != napi_ok) return fail(env, "no callback for the logins' events");
  napi_unref_threadsafe_function(env, tsfn);
  if (napi_get_uv_event_loop(env, &js_loop) != napi_ok) return fail(env, "no event loop");
  epfd = epoll_create1(EPOLL_CLOEXEC);
  evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd < 0 || evfd < 0) return fail(env, "epoll or eventfd failed");
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &ev);
  free_buffers_safe = OpenSSL_version_num() >= 0x300000E0L;
  if (pthread_create(&thread, NULL, loop, NULL) != 0) return fail(env, "no thread");
  /* Its own name in top -H, ps -L and /proc/PID/task/TID/comm. */
  pthread_setname_np(thread, "gatehouse-relay");
  thread_started = 1;
  owner_env = env;
  /* Last, once nothing above can fail: init() may be called again after a failure. */
  uv_check_init(js_loop, &deliver_check);
  uv_unref((uv_handle_t *)&deliver_check);
  napi_add_env_cleanup_hook(env, cleanup, NULL);
  return NULL;
}

static void free_ctx(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  SSL_CTX_free(data);
}

static napi_value wrap_ctx(napi_env env, SSL_CTX *ctx) {
  napi_value v;
  napi_create_external(env, ctx, free_ctx, NULL, &v);
  return v;
}

/* A client that does not offer TLS 1.3 gets no session ticket: TLS 1.2 resumes from the master
 * secret itself, which the ticket carries sealed under a key that lives until the restart, so a
 * key taken later would open every recorded session it had sealed. (supported_versions: a length
 * byte, then two bytes per version.) */
static int no_tls12_tickets(SSL *s, int *alert, void *arg) {
  (void)alert; (void)arg;
  const unsigned char *ext = NULL;
  size_t len = 0;
  int tls13 = 0;
  if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_supported_versions, &ext, &len) == 1 && len >= 1 && (size_t)ext[0] + 1 <= len)
    for (size_t i = 1; i + 1 <= (size_t)ext[0]; i += 2) if (ext[i] == 0x03 && ext[i + 1] == 0x04) tls13 = 1;
  if (!tls13) SSL_set_options(s, SSL_OP_NO_TICKET);
  return SSL_CLIENT_HELLO_SUCCESS;
}

/* A ticket that opens resumes the session and is not replaced: OpenSSL's own ticket keys would
 * renew every TLS 1.3 ticket, so each resumed handshake would end with a new one to seal, send,
 * and for the client to take in before the login goes on. Node's TLS server (the doors' data path
 * before the addon's) renews none either; a client's ticket lives its 300 s and the first full
 * handshake after that gets a new one. A ticket that does not open, or has expired, gets a new
 * one with the full handshake, as by default. */
static SSL_TICKET_RETURN ticket_opened(SSL *s, SSL_SESSION *ss, const unsigned char *name, size_t name_len, SSL_TICKET_STATUS status, void *arg) {
  (void)s; (void)ss; (void)name; (void)name_len; (void)arg;
  switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW: return SSL_TICKET_RETURN_USE;
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT: return SSL_TICKET_RETURN_IGNORE_RENEW;
    default: return SSL_TICKET_RETURN_ABORT;
  }
}

/* serverContext(certPem, keyPem, tls13Suites, tls12Ciphers[, tickets[, ticketKey]]): the door's
 * certificate and order, how many session tickets a full handshake ends with (0, the default: no
 * resumption) and the 80 bytes that seal them (null: a random key of this context's own). */
static napi_value server_context(napi_env env, napi_callback_info info) {
  size_t argc = 6; napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t tickets = 0;
  if (argc < 4 || (argc >= 5 && (napi_get_value_uint32(env, argv[4], &tickets) != napi_ok || tickets > 4))) return fail(env, "serverContext(certPem, keyPem, tls13, tls12[, tickets 0-4[, ticketKey]])");
  size_t ticket_key_len = 0;
  uint8_t *ticket_key = argc >= 6 ? get_bytes(env, argv[5], &ticket_key_len) : NULL;
  if (ticket_key && ticket_key_len != 80) { free(ticket_key); return fail(env, "serverContext: a ticket key is 80 bytes"); }
  char *cert = get_string(env, argv[0]), *key = get_string(env, argv[1]), *tls13 = get_string(env, argv[2]), *tls12 = get_string(env, argv[3]);
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  int ok = ctx && cert && key && tls13 && tls12;
  if (ok) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | (tickets ? 0 : SSL_OP_NO_TICKET));
    /* Resumption only from stateless tickets, never from a cache. A ticket is sealed with the
     * listener's ticket key (the same in each data-path worker, new at every start) or else with
     * this context's own random key, and is good for 300 s, as Node's TLS server's are.
     * With none, nothing is sent after the handshake: libpq offers no ticket, and two by default
     * in TLS 1.3 would each be sealed and sent for nothing. A resumed TLS 1.3 handshake still
     * runs an ECDHE exchange (OpenSSL refuses psk_ke without SSL_OP_ALLOW_NO_DHE_KEX). */
    SSL_CTX_set_num_tickets(ctx, tickets);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (tickets) {
      SSL_CTX_set_timeout(ctx, 300);
      SSL_CTX_set_client_hello_cb(ctx, no_tls12_tickets, NULL);
      ok = SSL_CTX_set_session_ticket_cb(ctx, NULL, ticket_opened, NULL) == 1;
    }
    if (ticket_key) ok = ok && SSL_CTX_set_tlsext_ticket_keys(ctx, ticket_key, 80) == 1;
    /* No read-ahead until a relay keeps OpenSSL (keep_openssl): a hand-over needs every byte
     * after the login's last record still in the socket. */
    SSL_CTX_set_read_ahead(ctx, 0);
    SSL_CTX_set_keylog_callback(ctx, keylog);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    ok = ok && SSL_CTX_set_ciphersuites(ctx, tls13) == 1 && SSL_CTX_set_cipher_list(ctx, tls12) == 1;
  }
  if (ok) {
    BIO *bio = BIO_new_mem_buf(cert, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1;
    X509 *extra;
    while (ok && (extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) SSL_CTX_add_extra_chain_cert(ctx, extra);
    BIO_free(bio);
    X509_free(x);
  }
  if (ok) {
    BIO *bio = BIO_new_mem_buf(key, -1);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    ok = pk != NULL && SSL_CTX_use_PrivateKey(ctx, pk) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pk);
    BIO_free(bio);
  }
  ERR_clear_error();
  free(cert); free(key); free(tls13); free(tls12);
  if (ticket_key) { OPENSSL_cleanse(ticket_key, ticket_key_len); free(ticket_key); }
  if (!ok) { SSL_CTX_free(ctx); return fail(env, "bad certificate, key, cipher list or ticket key"); }
  return wrap_ctx(env, ctx);
}

/* clientContext(caPem): a target's certificate must chain to caPem (''; none: the result is
 * reported, and the fingerprint is pinned by JavaScript). */
/* A session to resume later, serialized as Node's 'session' event gives it (i2d_SSL_SESSION). */
static int new_session(SSL *ssl, SSL_SESSION *sess) {
  ep *e = SSL_get_app_data(ssl);
  int n = i2d_SSL_SESSION(sess, NULL);
  if (!e || n <= 0) return 0;
  uint8_t *der = malloc((size_t)n), *q = der;
  i2d_SSL_SESSION(sess, &q);
  evt *v = emit(EV_SESSION, e->id, 1);
  v->data = der;
  v->len = (size_t)n;
  return 0;
}

static napi_value client_context(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return fail(env, "clientContext(caPem)");
  char *ca = get_string(env, argv[0]);
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  int ok = ctx != NULL && ca != NULL;
  if (ok) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* No read-ahead until a relay keeps OpenSSL (keep_openssl): a hand-over needs every byte
     * after the login's last record still in the socket. */
    SSL_CTX_set_read_ahead(ctx, 0);
    SSL_CTX_set_keylog_callback(ctx, keylog);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    /* The handshake completes either way; JavaScript judges the result (as Node's
     * rejectUnauthorized: false with `authorized` does). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* A session the target gives (a TLS 1.3 ticket, during the login) goes up for JavaScript
     * to keep and offer again (open's `session`); OpenSSL keeps none itself. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session);
    if (ca[0]) {
      BIO *bio = BIO_new_mem_buf(ca, -1);
      X509_STORE *store = SSL_CTX_get_cert_store(ctx);
      X509 *x;
      int n = 0;
      while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) { X509_STORE_add_cert(store, x); X509_free(x); n++; }
      BIO_free(bio);
      ok = n > 0;
    }
  }
  ERR_clear_error();
  free(ca);
  if (!ok) { SSL_CTX_free(ctx); return fail(env, "bad CA bundle"); }
  return wrap_ctx(env, ctx);
}

/* open(fd, role, context|null, host, pre|null, ahead|null, session|null): takes its own copy
 * of a connected socket; returns the endpoint's id. A server endpoint sends `pre` (the 'S'),
 * reads `ahead` (what was read of its hello already) and waits for the rest of the client's
 * hello; a client endpoint starts its handshake, checking `host`, offering `session` to resume. */
static napi_value open_endpoint(napi_env env, napi_callback_info info) {
  size_t argc = 7; napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, role;
  if (argc < 5 || owner_env != env || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &role) != napi_ok)
    return fail(env, "open(fd, role, context, host, pre) after init()");
  SSL_CTX *ctx = NULL;
  if (role != ROLE_PLAIN && napi_get_value_external(env, argv[2], (void **)&ctx) != napi_ok) return fail(env, "open: a TLS endpoint needs a context");
  int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (mine < 0) return fail(env, "open: dup failed");
  uv_poll_t *poll = malloc(sizeof *poll);
  if (uv_poll_init(js_loop, poll, mine) != 0) { free(poll); close(mine); return fail(env, "open: the socket cannot be polled"); }
  /* Node's socket (or the login waiting on it) keeps the process alive, not this. */
  uv_unref((uv_handle_t *)poll);
  ep *e = calloc(1, sizeof *e);
  e->id = ++next_id;
  e->fd = mine;
  e->poll = poll;
  poll->data = e;
  e->role = role;
  e->reading = 1;
  e->state = role == ROLE_PLAIN ? ST_OPEN : ST_HANDSHAKE;
  if (role != ROLE_PLAIN) {
    e->ssl = SSL_new(ctx);
    size_t ahead_len = 0;
    uint8_t *ahead = argc >= 6 && role == ROLE_SERVER ? get_bytes(env, argv[5], &ahead_len) : NULL;
    /* The client's hello may have come with what JavaScript read before it (a MySQL SSLRequest
     * is not answered): OpenSSL reads that first, then the socket. */
    BIO *bio = sock_bio(mine, ahead, ahead_len);
    free(ahead);
    if (bio) SSL_set_bio(e->ssl, bio, bio);
    e->keys = calloc(1, sizeof *e->keys);
    SSL_set_app_data(e->ssl, e);
    SSL_set_msg_callback(e->ssl, on_record);
    if (role == ROLE_SERVER) SSL_set_accept_state(e->ssl);
    else {
      char *host = get_string(env, argv[3]);
      SSL_set_connect_state(e->ssl);
      size_t der_len = 0;
      uint8_t *der = argc >= 7 ? get_bytes(env, argv[6], &der_len) : NULL;
      if (der) {
        const uint8_t *q = der;
        SSL_SESSION *sess = d2i_SSL_SESSION(NULL, &q, (long)der_len);
        if (sess) { SSL_set_session(e->ssl, sess); SSL_SESSION_free(sess); }
        ERR_clear_error();
        free(der);
      }
      if (host && host[0]) {
        X509_VERIFY_PARAM *param = SSL_get0_param(e->ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
          ERR_clear_error();
          X509_VERIFY_PARAM_set1_host(param, host, 0);
          SSL_set_tlsext_host_name(e->ssl, host);
        }
      }
      free(host);
    }
  }
  e->out = get_bytes(env, argv[4], &e->out_len);
  e->out_cap = e->out_len;
  /* Read first: a socket already closed or reset frees the endpoint at once. */
  double eid = e->id;
  open_ep(e);
  login_step_done(0);
  napi_value id;
  napi_create_double(env, eid, &id);
  return id;
}

static napi_value simple(napi_env env, napi_callback_info info, int kind) {
  size_t argc = 3; napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id;
  if (argc < 1 || owner_env != env || napi_get_value_double(env, argv[0], &id) != napi_ok) return fail(env, "an endpoint id after init()");
  cmd *c = calloc(1, sizeof *c);
  c->kind = kind;
  c->id = id;
  if (argc >= 2) c->data = get_bytes(env, argv[1], &c->len);
  if (argc >= 3) { bool b = false; napi_get_value_bool(env, argv[2], &b); c->flag = b; }
  ep *e = login_lookup(id);
  if (!e) { send_cmd(c); return NULL; }
  /* A login's endpoint is this thread's: the command runs now. */
  run_on(e, c);
  free_cmd(c);
  login_step_done(0);
  return NULL;
}

static napi_value write_cmd(napi_env env, napi_callback_info info) { return simple(env, info, C_WRITE); }
static napi_value stop_cmd(napi_env env, napi_callback_info info) { return simple(env, info, C_STOP); }
static napi_value end_cmd(napi_env env, napi_callback_info info) { return simple(env, info, C_END); }
static napi_value close_cmd(napi_env env, napi_callback_info info) { return simple(env, info, C_CLOSE); }
static napi_value notice_cmd(napi_env env, napi_callback_info info) { return simple(env, info, C_NOTICE); }
static napi_value teardown_cmd(napi_env env, napi_callback_info info) { return simple(env, info, C_TEARDOWN); }
static napi_value ack_cmd(napi_env env, napi_callback_info info) { return simple(env, info, C_ACK); }
/* verdict(id, bytes, answer): the JavaScript side's word on a held MySQL command (my_verdict). */
static napi_value verdict_cmd(napi_env env, napi_callback_info info) { return simple(env, info, C_VERDICT); }

/* audited(id, count): JavaScript audited `count` statements of the relay of client `id`. */
static napi_value audited_cmd(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id; uint32_t n;
  if (argc < 2 || owner_env != env || napi_get_value_double(env, argv[0], &id) != napi_ok || napi_get_value_uint32(env, argv[1], &n) != napi_ok)
    return fail(env, "audited(id, count) after init()");
  cmd *c = calloc(1, sizeof *c);
  c->kind = C_AUDITED;
  c->id = id;
  c->limit = n;
  send_cmd(c);
  return NULL;
}

/* splice(client, target, greeting, clientRest, targetRest, limit, capture, lean): `lean`, the
 * relay's TLS legs leave OpenSSL for the lean record layer where they can. */
static napi_value splice_cmd(napi_env env, napi_callback_info info) {
  size_t argc = 9; napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double a, b; uint32_t limit; bool capture = false, lean = false;
  if (argc < 8 || owner_env != env || napi_get_value_double(env, argv[0], &a) != napi_ok || napi_get_value_double(env, argv[1], &b) != napi_ok ||
      napi_get_value_uint32(env, argv[5], &limit) != napi_ok || napi_get_value_bool(env, argv[6], &capture) != napi_ok ||
      napi_get_value_bool(env, argv[7], &lean) != napi_ok)
    return fail(env, "splice(client, target, greeting, clientRest, targetRest, limit, capture, lean)");
  cmd *c = calloc(1, sizeof *c);
  c->kind = C_SPLICE;
  c->id = a;
  c->id2 = b;
  c->data = get_bytes(env, argv[2], &c->len);
  c->data2 = get_bytes(env, argv[3], &c->len2);
  c->data3 = get_bytes(env, argv[4], &c->len3);
  c->limit = limit;
  c->flag = capture;
  c->flag2 = lean;
  /* A ninth argument, [maxPacket, deprecateEof, cacheMetadata, killHeadLimit]: a MySQL relay. */
  bool is_array = false;
  if (argc >= 9 && napi_is_array(env, argv[8], &is_array) == napi_ok && is_array) {
    uint32_t v[4] = { 0, 0, 0, 0 };
    for (uint32_t k = 0; k < 4; k++) {
      napi_value x;
      if (napi_get_element(env, argv[8], k, &x) != napi_ok || napi_get_value_uint32(env, x, &v[k]) != napi_ok) { free_cmd(c); return fail(env, "splice: MySQL options are four numbers"); }
    }
    c->mysql = 1;
    c->max_packet = v[0];
    c->deprecate_eof = v[1] != 0;
    c->cache_metadata = v[2] != 0;
    c->hold_limit = v[3];
  }
  /* What this thread emitted and has not delivered yet (a poll callback earlier in this turn
   * of the loop) goes up before anything the loop thread says of these legs. */
  queue_js_events();
  /* Both legs leave this thread with the command (an id not found here was closed, or was
   * never a login's: the loop's splice_now deals with it as before). */
  if ((c->client = login_lookup(a)) != NULL) drop_poll(c->client);
  if ((c->target = login_lookup(b)) != NULL) drop_poll(c->target);
  send_cmd(c);
  return NULL;
}

/* stats(): endpoints this process holds, those on the lean record layer, and the AEAD contexts
 * keyed so far (read without the loop's lock: gauges). */
static napi_value stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_double(env, (double)__atomic_load_n(&live_endpoints, __ATOMIC_RELAXED), &v);
  napi_set_named_property(env, o, "endpoints", v);
  napi_create_double(env, (double)lean_endpoints, &v);
  napi_set_named_property(env, o, "lean", v);
  napi_create_double(env, (double)aead_keyings, &v);
  napi_set_named_property(env, o, "aeadKeyings", v);
  return o;
}

static napi_value init(napi_env env, napi_value exports) {
  /* A login stream acks in steps of half of this (protocols/shared/native.ts): it reads it here,
   * so the step can never exceed the window the addon stops at. */
  napi_value window;
  napi_create_uint32(env, LOGIN_WINDOW, &window);
  napi_property_descriptor props[] = {
    { "loginWindow", NULL, NULL, NULL, NULL, window, napi_enumerable, NULL },
    { "init", NULL, init_loop, NULL, NULL, NULL, napi_default, NULL },
    { "serverContext", NULL, server_context, NULL, NULL, NULL, napi_default, NULL },
    { "clientContext", NULL, client_context, NULL, NULL, NULL, napi_default, NULL },
    { "open", NULL, open_endpoint, NULL, NULL, NULL, napi_default, NULL },
    { "write", NULL, write_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "stop", NULL, stop_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "end", NULL, end_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, close_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "splice", NULL, splice_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "notice", NULL, notice_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "teardown", NULL, teardown_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "ack", NULL, ack_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "audited", NULL, audited_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "verdict", NULL, verdict_cmd, NULL, NULL, NULL, napi_default, NULL },
    { "stats", NULL, stats, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
