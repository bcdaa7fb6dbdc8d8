/* SPDX-License-Identifier: MIT */
#ifndef RILL_HUB_H
#define RILL_HUB_H
#include <event2/buffer.h>
#include <lua.h>

struct hub_stats {
    long topics, subscribers, published, dropped, gaps;
};

/*
 * If the value at idx is a published hub event, queues its encoded bytes on
 * out by reference (no copy) and returns 1; else 0.
 */
int rill_hub_write(struct evbuffer *out, lua_State *L, int idx);
const struct hub_stats *rill_hub_stats(void);

#endif
