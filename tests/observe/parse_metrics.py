#!/usr/bin/env python3
"""Parses Prometheus text exposition from stdin with prometheus_client's parser (the
reference implementation) and prints every sample as JSON: a list of
{"family", "type", "name", "labels", "value"}. Exits non-zero on a parse error."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        out.append({
            "family": family.name,
            "type": family.type,
            "name": sample.name,
            "labels": sample.labels,
            "value": sample.value,
        })
json.dump(out, sys.stdout)
