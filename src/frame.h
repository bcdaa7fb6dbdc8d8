/* SPDX-License-Identifier: MIT */
#ifndef RILL_FRAME_H
#define RILL_FRAME_H
#include <stddef.h>
#include <stdint.h>

/*
 * The frames of the master <-> worker channel (relay.c, hub_relay.c): a
 * 4-byte big-endian length (of what follows), a type byte, then fields:
 * integers as 8 bytes big-endian, strings as a 4-byte length, the bytes and
 * a NUL (so a reader may use them in place as C strings), optional values
 * as a tag byte then, for RILL_OPT_STRING/NUMBER, a string. No libevent, no Lua.
 */

#define RILL_FRAME_HEAD 4
#define RILL_FRAME_MAX  (80u << 20) /* a frame past this is a protocol error */

enum rill_frame_type {
    /* worker -> master */
    RILL_F_PUB = 1,    /* token, topic, opt id, prefix, suffix, fields, opt trace */
    RILL_F_CLOSE,      /* token, topic */
    RILL_F_DISCONNECT, /* topic (also master -> worker: origin pid, topic) */
    RILL_F_CONFIG,     /* history, history_bytes, history_age (us), max_topics, total_bytes */
    RILL_F_READY,      /* (the app loaded and the snapshot is applied) */
    RILL_F_FAILED,     /* message: the app did not load */
    RILL_F_FILES,      /* count, then that many paths: the Lua files the app loaded */
    RILL_F_DRAINING,   /* (DRAIN's answer: the worker accepts no connection any more) */
    /* master -> worker */
    RILL_F_EV = 32, /* origin pid, token, topic, epoch, seq, id, wire, fields, at (us), opt trace */
    RILL_F_REFUSED, /* token, message, opt code: a publish or close that failed */
    RILL_F_CLOSED,  /* origin pid, token, topic */
    RILL_F_TOPIC,   /* name, epoch, last seq, closed: a snapshot's topic */
    RILL_F_SNAP_END, /* the snapshot is complete: live events follow */
    RILL_F_ACCEPT,   /* start accepting connections */
    RILL_F_DRAIN,    /* deadline (ms): stop accepting, keep streams until it passes */
    RILL_F_LEAD,     /* 1 or 0: the worker runs the `once` background tasks, or no longer */
};

enum rill_opt { RILL_OPT_NONE, RILL_OPT_STRING, RILL_OPT_NUMBER };

/* A frame being written, in memory that grows (malloc). */
struct rill_frame_out {
    unsigned char *p;
    size_t len, cap;
    int failed; /* out of memory: the frame must not be sent */
};

void rill_frame_begin(struct rill_frame_out *f, enum rill_frame_type type);
void rill_frame_u64(struct rill_frame_out *f, uint64_t v);
void rill_frame_str(struct rill_frame_out *f, const char *s, size_t len);
void rill_frame_opt(struct rill_frame_out *f, enum rill_opt tag, const char *s, size_t len);
/* Fills in the length; 0, or -1 if the frame failed or is too large. */
int rill_frame_end(struct rill_frame_out *f);
void rill_frame_release(struct rill_frame_out *f);

/* A frame being read, in place. After a bad read, every further read fails too. */
struct rill_frame_in {
    int type;
    const unsigned char *p;
    size_t left;
    int bad;
};

/*
 * The size of the whole frame starting at head (at least RILL_FRAME_HEAD
 * bytes), or 0 when its length is out of bounds (a protocol error).
 */
size_t rill_frame_size(const unsigned char *head);
/* Starts reading a whole frame of size bytes; -1 if it has no type byte. */
int rill_frame_open(struct rill_frame_in *f, const unsigned char *frame, size_t size);
uint64_t rill_frame_get_u64(struct rill_frame_in *f);
/* The string and its length (NUL-terminated in place); "" on a bad read. */
const char *rill_frame_get_str(struct rill_frame_in *f, size_t *len);
/* RILL_OPT_NONE (s = NULL) or the tag, with the string. */
enum rill_opt rill_frame_get_opt(struct rill_frame_in *f, const char **s, size_t *len);
/* 0 if every read was good and nothing is left over. */
int rill_frame_done(const struct rill_frame_in *f);

#endif
