"""The one experiment runner behind every ``experiments/*.py``, split by concept:

==============  ==========================================================================================
``args``        the common flags and argument types (bad values: one line, exit 2)
``lifecycle``   the status, results.json, exit codes and signals
``resume``      whether ``--resume`` may continue what ``--out`` holds (run identity)
``devices``     multi-process initialisation and ``--devices``
``images``      the image experiments' epoch policy, and ``fail`` (a refusal with an exit code)
``variant``     the path ``fit`` and ``sweep`` share: checkpoint file, resume, history, progress, checkpoints
``run``         ``Run``, the context manager that puts them together
==============  ==========================================================================================

An experiment keeps only what is its own (model, variants, plot)::

    def main(argv=None):
        p = runner.parser(__doc__, epochs=10, lr=0.5, batch_size=256, out="runs/mine", image_dataset=True)
        with runner.Run("mine", p, argv) as run:
            data = run.images(run.load_images(), flatten=True)
            state, history = run.fit("variant", model, scratch_sgd(run.args.lr), data, epochs=run.epochs())
            run.finish({"final": history.final(), "plots": [...]})

On the command line (``runner.script(main)``): exit 0 completed; 1 an unexpected error (traceback; ``status:
"failed"``); 2 a bad argument, caught before training (one line); 3 the training diverged (``status: "diverged"``);
130 / 143 interrupted by SIGINT / SIGTERM (``status: "interrupted"``, every completed epoch kept, checkpoint saved:
rerun with ``--resume``). From Python (``main([...])`` in a notebook) the same ends are exceptions -- ``UsageError``,
``Diverged``, ``KeyboardInterrupt`` -- recorded in results.json alike; nothing ends the process.
"""
from regjax.runner.args import (
    IMAGE_DATASETS,
    HelpShown,
    UsageError,
    add_presets,
    command_line,
    device_count,
    distinct_values,
    nonnegative_float,
    nonnegative_int,
    on_command_line,
    out_folder,
    parser,
    peek_choice,
    positive_float,
    positive_int,
    rate,
    seed,
)
from regjax.runner.images import fail, resolve_epochs
from regjax.runner.lifecycle import EXIT_CODES, Terminated, script
from regjax.runner.run import Run

__all__ = ["Run", "parser", "add_presets", "script", "command_line", "on_command_line", "UsageError", "HelpShown",
           "Terminated", "EXIT_CODES", "IMAGE_DATASETS", "peek_choice", "fail", "resolve_epochs", "positive_int",
           "nonnegative_int", "seed", "positive_float", "nonnegative_float", "rate", "device_count", "out_folder",
           "distinct_values"]
