#!/usr/bin/env python
"""D2L §8.5: LeNet with batch normalization (after each conv/dense layer, before the sigmoid) on
Fashion-MNIST, 10 epochs; ``--preset zh-v2`` (default: the Chinese edition and English r0.17) lr 1.0, batch 256;
``--preset en`` (d2l-en master, its PyTorch tab) lr 0.1, batch 128. Reports accuracy and the learned scale/bias of the first BN
layer; ``--no-bn`` trains the same LeNet without BN for the contrast."""
from __future__ import annotations

from regjax import runner
from regjax.models.adapters import IMPLS, lenet_bn_model
from regjax.optim import sgd_for


def main(argv=None):
    p = runner.parser(__doc__, epochs=10, lr=1.0, batch_size=256, out="runs/batch_norm", impls=IMPLS,
                   image_dataset=True)
    p.add_argument("--no-bn", action="store_true", help="train LeNet without BatchNorm")
    runner.add_presets(p, {
        "zh-v2": {"help": "the Chinese edition (zh-v2) and English r0.17", "lr": 1.0, "batch_size": 256},
        "en": {"help": "the English edition (d2l-en master)", "lr": 0.1, "batch_size": 128}})
    with runner.Run("batch_norm", p, argv) as run:
        args = run.args
        ds = run.load_images()
        # LeNet's two VALID 5×5 convs need 28×28 inputs: the digits fallback is resized (recorded).
        data = run.images(ds, flatten=False, image_size=(28, 28))
        epochs = run.epochs()
        name = "LeNet" if args.no_bn else "LeNet-BN"
        run.say(f"dataset: {ds.name} ({ds.source}) as 28x28x1, {len(data[0])} train; {name}, impl {args.impl}; "
                f"{epochs} epochs; preset {args.preset}: lr {args.lr:g}, batch {args.batch_size}")
        model = lenet_bn_model(args.impl, 10, (28, 28, 1), use_bn=not args.no_bn)
        state, history = run.fit(name, model, sgd_for(args.impl, args.lr), data, epochs=epochs)
        final = history.final()
        payload = {"epochs": epochs, "final": final}
        run.say(f"[{name}] final test accuracy {final['test_accuracy']:.4f}")
        if not args.no_bn:
            bn0 = state.params["bn0"]
            payload["bn0"] = {"scale": bn0["scale"].tolist(), "bias": bn0["bias"].tolist()}
            run.say(f"first BN layer: scale {[round(v, 3) for v in payload['bn0']['scale']]}\n"
                    f"                 bias  {[round(v, 3) for v in payload['bn0']['bias']]}")
        plot = run.plot_histories("batch_norm.png", f"{name} on {ds.name} ({args.impl})")
        run.finish({**payload, "plots": [str(plot)]})
    return final


if __name__ == "__main__":
    runner.script(main)
