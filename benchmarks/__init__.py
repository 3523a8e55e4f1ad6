"""Benchmarks of the operator at scale, on the local control plane and the test authorization server.

`python -m benchmarks` (or `make bench`) runs the scenarios and writes a JSON of results;
`python -m benchmarks report RESULTS.json` turns results into the tables and plots of
docs/benchmarks.md. Every figure is taken from outside the operator where it can be: token
requests from the authorization server's counters and timeline, API writes from kube-apiserver's
`apiserver_request_total`, memory and CPU from /proc.

Modules: `cluster` (the API server over HTTP, its metrics, a RaidiamClient watch), `procstat`
(/proc sampling), `operator` (the operator as a process), `floor` (the plain-script floor),
`sidecar` (observatorium/token-refresher as N processes), `scenarios` (burst, restart, steady
state), `report` (tables and plots).
"""
