"""The answers to D2L's exercises, one module per book section (``s3_7`` answers §3.7 ...), run by
``experiments/exercises.py --section``. Each module has ``SECTION`` (its number), ``TITLE``, ``section(run)`` (the
list of answers, in book order) and optionally ``add_arguments(parser)`` (its flags) and ``check(run)`` (refusals
before anything trains). docs/exercises.md collects every exercise with its answer and the command behind it."""
