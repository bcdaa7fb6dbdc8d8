/* SPDX-License-Identifier: MIT */
/* Unit tests for the master's hub history: ids, wire blocks, every bound, the snapshot. */
#include "relay_history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Linked with --wrap=malloc,calloc: the next allocation after fail_in more fails (-1: none). */
static long fail_in = -1;
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);

static int failing(void)
{
    if (fail_in < 0)
        return 0;
    return fail_in-- == 0;
}

void *__wrap_malloc(size_t n)
{
    return failing() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return failing() ? NULL : __real_calloc(n, size);
}

#define PREFIX "event: tick\n"
#define SUFFIX "data: hello\n\n"

static const struct rill_history_event *last; /* the event the latest pub() returned */

/* Publishes PREFIX/SUFFIX to topic at now; id NULL: generated. */
static enum rill_history_result pub(struct rill_history *h, const char *topic, const char *id,
                                    double now)
{
    last = NULL;
    return rill_history_publish(h, topic, id, id ? strlen(id) : 0, PREFIX, strlen(PREFIX), SUFFIX,
                                strlen(SUFFIX), "f", 1, now, &last);
}

/* What foreach reported: topics in order, and for each the seqs of its events. */
struct snap {
    int ntopics, nevents;
    char name[8][32], epoch[8][8];
    uint64_t last_seq[8], seqs[8][16];
    int closed[8], count[8];
};

static void on_topic(void *arg, const char *name, const char *epoch, uint64_t last_seq,
                     uint64_t first_seq, int closed)
{
    struct snap *s = arg;
    int i = s->ntopics++;
    if (i >= 8)
        return;
    snprintf(s->name[i], sizeof s->name[i], "%s", name);
    snprintf(s->epoch[i], sizeof s->epoch[i], "%s", epoch);
    s->last_seq[i] = last_seq;
    (void)first_seq;
    s->closed[i] = closed;
    s->count[i] = 0;
}

static void on_event(void *arg, const struct rill_history_event *e)
{
    struct snap *s = arg;
    int i = s->ntopics - 1;
    s->nevents++;
    if (i >= 0 && i < 8 && s->count[i] < 16)
        s->seqs[i][s->count[i]++] = e->seq;
    CHECK(i >= 0 && (i >= 8 || strcmp(e->topic, s->name[i]) == 0)); /* its topic's */
}

/* The index of topic name in s, or -1. */
static int snap_find(const struct snap *s, const char *name)
{
    for (int i = 0; i < s->ntopics && i < 8; i++)
        if (strcmp(s->name[i], name) == 0)
            return i;
    return -1;
}

static struct snap snapshot(const struct rill_history *h)
{
    struct snap s;
    memset(&s, 0, sizeof s);
    rill_history_foreach(h, on_topic, on_event, &s);
    return s;
}

static long stat_of(const struct rill_history *h, int which)
{
    struct rill_history_stats st;
    rill_history_stats(h, &st);
    long v[] = {st.topics, st.events, st.bytes, st.evicted, st.refused};
    return v[which];
}
enum { TOPICS, EVENTS, BYTES, EVICTED, REFUSED };

static void test_ids(void)
{
    struct rill_history *h = rill_history_new(NULL);
    char epoch[8], want[64];
    CHECK(pub(h, "a", NULL, 1) == RILL_HISTORY_OK && last->seq == 1);
    snprintf(epoch, sizeof epoch, "%s", last->epoch);
    CHECK(strlen(epoch) == 4 && strspn(epoch, "0123456789abcdefghijklmnopqrstuvwxyz") == 4);
    snprintf(want, sizeof want, "%s-1", epoch);
    CHECK(strcmp(last->id, want) == 0 && last->id_len == strlen(want));
    CHECK(pub(h, "a", NULL, 2) == RILL_HISTORY_OK && last->seq == 2);
    snprintf(want, sizeof want, "%s-2", epoch);
    CHECK(strcmp(last->id, want) == 0 && strcmp(last->topic, "a") == 0);
    CHECK(pub(h, "a", "custom", 3) == RILL_HISTORY_OK);
    CHECK(strcmp(last->id, "custom") == 0 && last->id_len == 6 && last->seq == 3);
    CHECK(pub(h, "a", NULL, 4) == RILL_HISTORY_OK && last->seq == 4);
    snprintf(want, sizeof want, "%s-4", epoch);
    CHECK(strcmp(last->id, want) == 0);
    CHECK(pub(h, "b", NULL, 5) == RILL_HISTORY_OK && last->seq == 1); /* seqs are per topic */

    char id[200];
    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    id[128] = '\0';
    CHECK(pub(h, "c", id, 6) == RILL_HISTORY_OK && last->id_len == 128);
    id[128] = 'x';
    id[129] = '\0';
    CHECK(pub(h, "d", id, 7) == RILL_HISTORY_BADID && last == NULL);
    CHECK(pub(h, "d", "a\nb", 7) == RILL_HISTORY_BADID);
    CHECK(rill_history_publish(h, "d", "a\0b", 3, "", 0, "", 0, NULL, 0, 7, &last) ==
          RILL_HISTORY_BADID);
    CHECK(stat_of(h, TOPICS) == 3); /* a refused id creates no topic */
    CHECK(pub(h, "c", NULL, 8) == RILL_HISTORY_OK && last->seq == 2);
    rill_history_free(h);
}

static void test_wire(void)
{
    struct rill_history *h = rill_history_new(NULL);
    const struct rill_history_event *e = NULL;
    const char fields[] = {'k', 0, 'v'};
    CHECK(rill_history_publish(h, "w", "42", 2, ": hi\nevent: e\n", 14, "retry: 5\ndata: x\n\n", 18,
                               fields, 3, 1, &e) == RILL_HISTORY_OK);
    const char want[] = ": hi\nevent: e\nid: 42\nretry: 5\ndata: x\n\n";
    CHECK(e->wire_len == sizeof want - 1 && memcmp(e->wire, want, e->wire_len) == 0);
    CHECK(e->fields_len == 3 && memcmp(e->fields, fields, 3) == 0);
    CHECK(e->at == 1 && e->id[e->id_len] == '\0');
    CHECK(stat_of(h, BYTES) == (long)(e->wire_len + RILL_HISTORY_EVENT_OVERHEAD));

    CHECK(rill_history_publish(h, "w", NULL, 0, NULL, 0, "data: y\n\n", 9, NULL, 0, 2, &e) ==
          RILL_HISTORY_OK);
    char gen[64];
    snprintf(gen, sizeof gen, "id: %s\ndata: y\n\n", e->id);
    CHECK(e->wire_len == strlen(gen) && memcmp(e->wire, gen, e->wire_len) == 0);
    CHECK(e->fields_len == 0);
    rill_history_free(h);
}

static void test_count_bytes_age(void)
{
    struct rill_history_config c = rill_history_defaults;
    c.history = 3;
    struct rill_history *h = rill_history_new(&c);
    for (int i = 0; i < 5; i++)
        CHECK(pub(h, "a", NULL, i) == RILL_HISTORY_OK);
    struct snap s = snapshot(h);
    CHECK(s.ntopics == 1 && s.count[0] == 3 && s.last_seq[0] == 5);
    CHECK(s.seqs[0][0] == 3 && s.seqs[0][1] == 4 && s.seqs[0][2] == 5);
    size_t wl = last->wire_len;
    rill_history_free(h);

    c = rill_history_defaults;
    c.history_bytes = 2 * wl + 1;
    h = rill_history_new(&c);
    for (int i = 0; i < 4; i++)
        CHECK(pub(h, "a", NULL, i) == RILL_HISTORY_OK);
    s = snapshot(h);
    CHECK(s.count[0] == 2 && s.seqs[0][0] == 3 && stat_of(h, EVENTS) == 2);
    CHECK(stat_of(h, EVICTED) == 0); /* per-topic trims are not evictions */
    rill_history_free(h);

    c = rill_history_defaults;
    c.history_bytes = 10; /* smaller than any event: dropped at once, still handed out */
    h = rill_history_new(&c);
    CHECK(pub(h, "a", NULL, 0) == RILL_HISTORY_OK && last && last->seq == 1);
    CHECK(last->wire_len == wl && memcmp(last->wire, PREFIX "id: ", strlen(PREFIX) + 4) == 0);
    CHECK(stat_of(h, EVENTS) == 0 && stat_of(h, BYTES) == 0);
    s = snapshot(h);
    CHECK(s.ntopics == 1 && s.count[0] == 0 && s.last_seq[0] == 1);
    rill_history_free(h);

    c = rill_history_defaults;
    c.history_age = 10;
    h = rill_history_new(&c);
    CHECK(pub(h, "a", NULL, 0) == RILL_HISTORY_OK);
    CHECK(pub(h, "a", NULL, 5) == RILL_HISTORY_OK);
    CHECK(pub(h, "a", NULL, 11) == RILL_HISTORY_OK); /* 0 < 11 - 10: gone */
    s = snapshot(h);
    CHECK(s.count[0] == 2 && s.seqs[0][0] == 2);
    CHECK(pub(h, "a", NULL, 15) == RILL_HISTORY_OK); /* 5 is not < 15 - 10: kept */
    s = snapshot(h);
    CHECK(s.count[0] == 3 && s.seqs[0][0] == 2);
    rill_history_sweep(h, 24); /* only the event at 15 is left */
    s = snapshot(h);
    CHECK(s.count[0] == 1 && s.seqs[0][0] == 4);
    rill_history_sweep(h, 30); /* all aged out: the open topic is idle, forgotten */
    CHECK(stat_of(h, TOPICS) == 0 && stat_of(h, EVENTS) == 0 && stat_of(h, BYTES) == 0);
    rill_history_free(h);
}

static void test_global_budget(void)
{
    struct rill_history *h = rill_history_new(NULL);
    CHECK(pub(h, "a", NULL, 1) == RILL_HISTORY_OK);
    long one = stat_of(h, BYTES);
    rill_history_free(h);

    struct rill_history_config c = rill_history_defaults;
    c.total_bytes = (size_t)(3 * one); /* every generated id here has the same length */
    h = rill_history_new(&c);
    CHECK(pub(h, "a", NULL, 1) == RILL_HISTORY_OK);
    CHECK(pub(h, "b", NULL, 2) == RILL_HISTORY_OK);
    CHECK(pub(h, "a", NULL, 3) == RILL_HISTORY_OK);
    CHECK(stat_of(h, EVICTED) == 0 && stat_of(h, BYTES) == 3 * one);
    CHECK(pub(h, "b", NULL, 4) == RILL_HISTORY_OK); /* a's first goes, the oldest overall */
    CHECK(stat_of(h, EVICTED) == 1 && stat_of(h, BYTES) == 3 * one && stat_of(h, EVENTS) == 3);
    struct snap s = snapshot(h);
    int a = snap_find(&s, "a"), b = snap_find(&s, "b");
    CHECK(a >= 0 && s.count[a] == 1 && s.seqs[a][0] == 2);
    CHECK(b >= 0 && s.count[b] == 2 && s.seqs[b][0] == 1 && s.seqs[b][1] == 2);
    CHECK(pub(h, "b", NULL, 5) == RILL_HISTORY_OK); /* then b's first, older than a's second */
    s = snapshot(h);
    a = snap_find(&s, "a"), b = snap_find(&s, "b");
    CHECK(s.count[a] == 1 && s.count[b] == 2 && s.seqs[b][0] == 2 && stat_of(h, EVICTED) == 2);
    CHECK(pub(h, "b", NULL, 6) == RILL_HISTORY_OK); /* a is left empty, but not forgotten */
    s = snapshot(h);
    a = snap_find(&s, "a");
    CHECK(a >= 0 && s.count[a] == 0 && s.last_seq[a] == 2 && stat_of(h, TOPICS) == 2);
    rill_history_free(h);
}

static void on_global(void *arg, const struct rill_history_event *e)
{
    char *out = arg;
    size_t n = strlen(out);
    snprintf(out + n, 64 - n, "%s%llu ", e->topic, (unsigned long long)e->seq);
}

static void test_closed(void)
{
    struct rill_history_config c = rill_history_defaults;
    c.history_age = 10;
    struct rill_history *h = rill_history_new(&c);
    CHECK(pub(h, "c", NULL, 0) == RILL_HISTORY_OK);
    CHECK(rill_history_close(h, "c") == RILL_HISTORY_OK);
    CHECK(rill_history_close(h, "c") == RILL_HISTORY_OK); /* idempotent */
    CHECK(pub(h, "c", NULL, 1) == RILL_HISTORY_CLOSED && last == NULL);
    CHECK(rill_history_close(h, "never-published") == RILL_HISTORY_OK);
    CHECK(stat_of(h, TOPICS) == 2 && stat_of(h, EVENTS) == 1);
    rill_history_sweep(h, 5);
    struct snap s = snapshot(h);
    CHECK(s.ntopics == 2 && strcmp(s.name[0], "c") == 0 && s.closed[0] && s.count[0] == 1);
    CHECK(strcmp(s.name[1], "never-published") == 0 && s.closed[1] && s.last_seq[1] == 0);
    rill_history_sweep(h, 100); /* its history ages out; the topic stays, closed */
    s = snapshot(h);
    CHECK(s.ntopics == 2 && s.closed[0] && s.count[0] == 0 && s.last_seq[0] == 1);
    CHECK(pub(h, "c", NULL, 101) == RILL_HISTORY_CLOSED);
    rill_history_free(h);
}

static void test_max_topics(void)
{
    struct rill_history_config c = rill_history_defaults;
    c.max_topics = 2;
    c.history_age = 10;
    struct rill_history *h = rill_history_new(&c);
    CHECK(pub(h, "x", NULL, 0) == RILL_HISTORY_OK);
    CHECK(rill_history_close(h, "y") == RILL_HISTORY_OK);
    CHECK(pub(h, "z", NULL, 100) == RILL_HISTORY_OK); /* x aged out: idle, forgotten */
    struct snap s = snapshot(h);
    CHECK(s.ntopics == 2 && snap_find(&s, "x") < 0 && snap_find(&s, "y") >= 0);
    CHECK(pub(h, "w", NULL, 101) == RILL_HISTORY_OK); /* no idle one: closed, empty y goes */
    s = snapshot(h);
    CHECK(s.ntopics == 2 && snap_find(&s, "y") < 0 && snap_find(&s, "w") >= 0);
    CHECK(pub(h, "v", NULL, 102) == RILL_HISTORY_LIMIT && last == NULL);
    CHECK(rill_history_close(h, "u") == RILL_HISTORY_LIMIT);
    CHECK(stat_of(h, REFUSED) == 2 && stat_of(h, TOPICS) == 2);
    CHECK(pub(h, "z", NULL, 103) == RILL_HISTORY_OK); /* existing topics go on */
    CHECK(rill_history_close(h, "z") == RILL_HISTORY_OK);
    CHECK(pub(h, "v", NULL, 104) == RILL_HISTORY_LIMIT); /* a closed topic with history stays */
    rill_history_free(h);

    c.max_topics = 3;
    h = rill_history_new(&c);
    CHECK(rill_history_close(h, "c2") == RILL_HISTORY_OK);
    CHECK(rill_history_close(h, "c1") == RILL_HISTORY_OK);
    CHECK(pub(h, "p", NULL, 0) == RILL_HISTORY_OK);
    CHECK(pub(h, "q", NULL, 1) == RILL_HISTORY_OK); /* c2 was closed first: it goes */
    s = snapshot(h);
    CHECK(s.ntopics == 3 && snap_find(&s, "c2") < 0 && snap_find(&s, "c1") >= 0);
    CHECK(rill_history_close(h, "p") == RILL_HISTORY_OK);
    s = snapshot(h); /* closed ones first, in closing order */
    CHECK(strcmp(s.name[0], "c1") == 0 && strcmp(s.name[1], "p") == 0 && !s.closed[2]);
    rill_history_free(h);
}

static void test_comeback(void)
{
    struct rill_history_config c = rill_history_defaults;
    c.history_age = 10;
    struct rill_history *h = rill_history_new(&c);
    char epoch[8];
    CHECK(pub(h, "r", NULL, 0) == RILL_HISTORY_OK);
    CHECK(pub(h, "r", NULL, 1) == RILL_HISTORY_OK && last->seq == 2);
    snprintf(epoch, sizeof epoch, "%s", last->epoch);
    rill_history_sweep(h, 50);
    CHECK(stat_of(h, TOPICS) == 0);
    CHECK(pub(h, "r", NULL, 51) == RILL_HISTORY_OK && last->seq == 1);
    CHECK(strcmp(last->epoch, epoch) != 0 && strncmp(last->id, last->epoch, 4) == 0);
    CHECK(strcmp(last->id + 4, "-1") == 0);
    rill_history_free(h);
}

static void test_foreach(void)
{
    struct rill_history_config c = rill_history_defaults;
    c.history_age = 10;
    struct rill_history *h = rill_history_new(&c);
    CHECK(pub(h, "old", NULL, 0) == RILL_HISTORY_OK);
    CHECK(pub(h, "old", NULL, 1) == RILL_HISTORY_OK);
    CHECK(rill_history_close(h, "old") == RILL_HISTORY_OK);
    CHECK(pub(h, "live", NULL, 2) == RILL_HISTORY_OK);
    CHECK(pub(h, "live", NULL, 20) == RILL_HISTORY_OK);
    CHECK(pub(h, "live", NULL, 21) == RILL_HISTORY_OK);
    rill_history_sweep(h, 25); /* old's history ages out (live's first went at 20) */
    struct snap s = snapshot(h);
    int o = snap_find(&s, "old"), l = snap_find(&s, "live");
    CHECK(s.ntopics == 2 && o >= 0 && l >= 0);
    CHECK(s.closed[o] && s.last_seq[o] == 2 && s.count[o] == 0);
    CHECK(!s.closed[l] && s.last_seq[l] == 3 && s.count[l] == 2);
    CHECK(s.seqs[l][0] == 2 && s.seqs[l][1] == 3 && s.nevents == 2);
    CHECK(strlen(s.epoch[o]) == 4);

    CHECK(pub(h, "other", NULL, 22) == RILL_HISTORY_OK);
    CHECK(pub(h, "live", NULL, 23) == RILL_HISTORY_OK);
    char order[64] = "";
    rill_history_foreach_event(h, on_global, order);
    CHECK(strcmp(order, "live2 live3 other1 live4 ") == 0);
    rill_history_free(h);
}

static void test_configure(void)
{
    struct rill_history *h = rill_history_new(NULL);
    for (int i = 0; i < 5; i++)
        CHECK(pub(h, "a", NULL, i) == RILL_HISTORY_OK);
    CHECK(pub(h, "b", NULL, 5) == RILL_HISTORY_OK);
    long one = stat_of(h, BYTES) / 6;
    struct rill_history_config c = rill_history_defaults;
    c.history = 2;
    rill_history_configure(h, &c);
    CHECK(stat_of(h, EVENTS) == 6); /* nothing yet */
    CHECK(pub(h, "a", NULL, 6) == RILL_HISTORY_OK);
    struct snap s = snapshot(h);
    int a = snap_find(&s, "a"), b = snap_find(&s, "b");
    CHECK(s.count[a] == 2 && s.seqs[a][0] == 5 && s.count[b] == 1); /* only the topic published */
    c.total_bytes = (size_t)(2 * one);
    rill_history_configure(h, &c);
    CHECK(stat_of(h, EVENTS) == 3);
    CHECK(pub(h, "a", NULL, 7) ==
          RILL_HISTORY_OK); /* a's 5 (per topic), then b's 1 (oldest overall) */
    s = snapshot(h);
    a = snap_find(&s, "a"), b = snap_find(&s, "b");
    CHECK(stat_of(h, EVENTS) == 2 && s.count[a] == 2 && s.seqs[a][0] == 6 && s.count[b] == 0);
    CHECK(stat_of(h, EVICTED) == 1);
    rill_history_free(h);
}

static void count_topic(void *arg, const char *name, const char *epoch, uint64_t last_seq,
                        uint64_t first_seq, int closed)
{
    (void)name, (void)epoch, (void)closed, (void)first_seq;
    ((long *)arg)[0] += last_seq == 1;
}

static void count_event(void *arg, const struct rill_history_event *e)
{
    ((long *)arg)[1] += e->seq == 1;
}

static void test_many_topics(void)
{
    struct rill_history *h = rill_history_new(NULL);
    char name[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(name, sizeof name, "topic-%d", i);
        CHECK(pub(h, name, NULL, i * 0.001) == RILL_HISTORY_OK && last->seq == 1);
    }
    CHECK(stat_of(h, TOPICS) == 10000 && stat_of(h, EVENTS) == 10000);
    CHECK(pub(h, "one too many", NULL, 11) == RILL_HISTORY_LIMIT);
    long n[2] = {0, 0};
    rill_history_foreach(h, count_topic, count_event, n);
    CHECK(n[0] == 10000 && n[1] == 10000);
    rill_history_sweep(h, 10000); /* everything aged out: every topic idle */
    CHECK(stat_of(h, TOPICS) == 0 && stat_of(h, BYTES) == 0);
    rill_history_free(h);
}

/*
 * Fails the k-th allocation of a publish, for every k until one succeeds:
 * NOMEM must leave the store as it was (no topic, event or byte more).
 */
static void nomem_publish(struct rill_history *h, const char *topic, int *nomems)
{
    long before[3] = {stat_of(h, TOPICS), stat_of(h, EVENTS), stat_of(h, BYTES)};
    for (long k = 0;; k++) {
        fail_in = k;
        enum rill_history_result r = pub(h, topic, NULL, 1);
        fail_in = -1;
        if (r == RILL_HISTORY_OK)
            break;
        CHECK(r == RILL_HISTORY_NOMEM && last == NULL);
        CHECK(stat_of(h, TOPICS) == before[0] && stat_of(h, EVENTS) == before[1]);
        CHECK(stat_of(h, BYTES) == before[2]);
        (*nomems)++;
    }
    CHECK(stat_of(h, EVENTS) == before[1] + 1);
}

static void test_nomem(void)
{
    fail_in = 0;
    CHECK(rill_history_new(NULL) == NULL);
    fail_in = 1;
    CHECK(rill_history_new(NULL) == NULL);
    fail_in = -1;
    struct rill_history *h = rill_history_new(NULL);
    char name[16];
    for (int i = 0; i < 63; i++) { /* the next topic makes the bucket array grow */
        snprintf(name, sizeof name, "t%d", i);
        CHECK(pub(h, name, NULL, 0) == RILL_HISTORY_OK);
    }
    for (int i = 0; i < 16; i++) /* a full ring: the next event makes it grow */
        CHECK(pub(h, "full", NULL, 0) == RILL_HISTORY_OK);
    int nomems = 0;
    nomem_publish(h, "new", &nomems); /* the event, the topic, its ring */
    CHECK(nomems == 3 && stat_of(h, TOPICS) == 65);
    nomems = 0;
    nomem_publish(h, "full", &nomems); /* the event, the ring */
    CHECK(nomems == 2);
    struct snap s = snapshot(h);
    CHECK(s.nevents == 63 + 17 + 1);
    rill_history_free(h);
}

int main(void)
{
    test_ids();
    test_wire();
    test_count_bytes_age();
    test_global_budget();
    test_closed();
    test_max_topics();
    test_comeback();
    test_foreach();
    test_configure();
    test_many_topics();
    test_nomem();
    return check_report();
}
