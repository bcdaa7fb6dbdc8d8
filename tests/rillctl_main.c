/* SPDX-License-Identifier: MIT */
/* `rillctl_test reload|stop ...`: rill_ctl_main alone, for spec/ctl_spec.lua. */
#include "ctl.h"

int main(int argc, char **argv)
{
    return rill_ctl_main(argc - 1, argv + 1);
}
