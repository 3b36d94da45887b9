"""Runs inside the separate ssrm-test venv (numpy<2): reads JSON {data, null, ks} on stdin,
prints {k: [sequential p-values]} computed by Optimizely's ssrm_test."""

import json
import sys

import numpy as np
from ssrm_test import ssrm_test

req = json.load(sys.stdin)
data = np.array(req["data"])
out = {}
for k in req["ks"]:
    out[str(k)] = [float(p) for p in ssrm_test.sequential_p_values(data, np.array(req["null"]),
                                                                     dirichlet_concentration=k)]
json.dump(out, sys.stdout)
