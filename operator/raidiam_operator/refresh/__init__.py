"""The refresh engine, split along its concerns (see docs/concepts.md for the map):

- `engine`: what kopf tells us, wired to the parts below;
- `scheduler`: the timer heap and the concurrency limit;
- `watch`: the watch cache: what kopf delivered, the Secret indexes, the cached inputs;
- `reconciler`: one attempt for one client, and the funnels every outcome goes through;
- `writes`: what an attempt writes (token Secret, status, Warning Events), only when it changes;
- `policy`: pure decisions over one frozen view: refresh or not, wait or not, what a failure
  means for the next attempt and the conditions;
- `render`, `renewal`, `inputs`: pure: the objects written, the renewal and retry times, the
  request built from a spec and its Secrets.
"""
