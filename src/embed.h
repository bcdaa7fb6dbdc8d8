/* SPDX-License-Identifier: MIT */
#ifndef RILL_EMBED_H
#define RILL_EMBED_H
#include <stddef.h>

/* One Lua module compiled into the executable (see cmake/embed.cmake). */
struct rill_embedded {
    const char *module; /* "rill.router" */
    const char *chunkname;
    const char *source;
    size_t len;
};

extern const struct rill_embedded rill_embedded[];

#endif
