"""A part's steps on a parameter-server cluster (`Trainer`'s mixin).

`RemoteSteps._run_part_remote` schedules the steps on the cluster's
workers through the strategy's coordinator and counts their outputs in
stream order, as `Trainer._step` does for one process. It reads the
trainer's `distribution`, `cfg`, `_remote` (the steps as per-worker
functions), `_account` and `_save_counters`.
"""


class RemoteSteps:
  """Runs a part's batches as steps scheduled on a cluster (a mixin)."""

  def _run_part_remote(self, batches, phase, sums, buckets, progress,
                       on_step) -> None:
    """A part's batches as steps scheduled on the cluster's workers.

    Up to `2 x workers` steps are in flight at once; their outputs are then
    fetched in stream order and counted as `_step` counts them, and
    `on_step` runs (checkpoint, interruption) once none is in flight, so a
    checkpoint holds whole steps. One worker runs the steps in stream
    order, as one process does; several run them concurrently
    (asynchronous training: README, "Training on a cluster").
    """
    coordinator = self.distribution.coordinator
    learn = phase == 'train' or self.cfg.train.test_mode == 'prequential'
    fn = self._remote['learn' if phase == 'train' else
                      'evaluate_and_learn' if learn else 'evaluate']
    window = 2 * max(self.distribution.num_workers, 1)
    in_flight = []

    def retire():
      done = 0
      for batch, remote in in_flight:
        out = remote.fetch()
        scores = out if phase == 'test' and not learn else None
        if phase == 'test' and learn:
          scores, out = out['evaluate'], out['learn']
        elif phase == 'test':
          out = None
        self._account(batch, phase, scores, out, {}, sums, buckets, progress)
        done += int(batch['user'].shape[0])
      # Written once per group (each write is an RPC to a ps task); only
      # `on_step` below reads them, through a checkpoint.
      self._save_counters(done, sums, buckets)
      in_flight.clear()
      if on_step is not None:
        on_step()

    for batch in batches:
      in_flight.append((batch, coordinator.schedule(fn, args=(batch,))))
      if len(in_flight) >= window:
        retire()
    if in_flight:
      retire()
