# SPDX-License-Identifier: MIT
# Parses Prometheus text exposition (a file) with the official client's
# parser (Debian's python3-prometheus-client: run it with /usr/bin/python3),
# and prints each sample as "name<TAB>labels<TAB>value", labels as k=v,k=v
# sorted; a TYPE per family as "#type<TAB>family<TAB>type". Exit 1 on a
# parse error, with the reason.
import sys

from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1], encoding="utf-8").read()
try:
    for family in text_string_to_metric_families(text):
        print("#type\t%s\t%s" % (family.name, family.type))
        for s in family.samples:
            labels = ",".join("%s=%s" % (k, v) for k, v in sorted(s.labels.items()))
            print("%s\t%s\t%r" % (s.name, labels, s.value))
except Exception as e:  # the parser raises ValueError and others on bad input
    print("parse error: %s" % e, file=sys.stderr)
    sys.exit(1)
