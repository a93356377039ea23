"""Every write of the audience side, one module per concern: ``rooms`` (a live room and its event
log), ``comments``, ``moderation``, ``polling``, ``bench_panel``, ``ratings`` and
``consultations``. The reads are in ``voting.selectors``.

Each public function is keyword-only and atomic, checks who may act, logs what it did, and
broadcasts only after commit (``transaction.on_commit``)."""
