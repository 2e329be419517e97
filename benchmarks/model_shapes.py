"""State-dict keys (in creation order) and shapes of every experiment's model, built on the
meta device through real Hydra composition; ``--compare`` checks them against an earlier dump.

The guard for config and model refactors that must not change any model:

    PYTHONPATH=<old checkout> python benchmarks/model_shapes.py --out before.json
    python benchmarks/model_shapes.py --out after.json --compare before.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _build(node):
    import hydra
    import torch

    try:
        with torch.device("meta"):
            return hydra.utils.instantiate(node)
    except Exception:  # noqa: BLE001 - modules that compute buffers at init (filterbank)
        return hydra.utils.instantiate(node)


def experiments(configs: Path) -> list[str]:
    root = configs / "experiment"
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")
                  if p.parent.name != "common")


def shapes(name: str, configs: Path) -> dict[str, list[int]] | str:
    """``{key: shape}`` of the experiment's model, or the error that stopped building it."""
    import hydra
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    import avsr  # noqa: F401 - registers the config resolvers

    try:
        with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
            cfg = compose("train", overrides=[f"+experiment={name}", "paths.output_dir=/tmp/x"])
        with open_dict(cfg):
            if cfg.get("vocab_size") is None:  # the tokenizer's size at run time
                cfg.vocab_size = cfg.data.get("vocab_size") or 40
        OmegaConf.resolve(cfg)
        parts = {k: None if v is None else _build(v) for k, v in cfg.model.items()
                 if k != "_target_"}
        model = hydra.utils.get_class(cfg.model._target_)(**parts)
        return {k: list(v.shape) for k, v in model.state_dict().items()}
    except Exception as err:  # noqa: BLE001 - reported per experiment
        return f"ERROR {type(err).__name__}: {err}"


def compare(new: dict, old: dict) -> list[str]:
    """Differences: missing experiments, errors, keys (or their order) and shapes."""
    problems = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            problems.append(f"{name}: only in {'new' if a is None else 'old'}")
        elif isinstance(a, str) or isinstance(b, str):
            if a != b:
                problems.append(f"{name}: {a if isinstance(a, str) else b}")
        elif list(a) != list(b):
            problems.append(f"{name}: keys differ ({sorted(set(a) ^ set(b))[:5]}, or order)")
        else:
            problems += [f"{name}: {k} {a[k]} -> {b[k]}" for k in a if a[k] != b[k]]
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--configs", type=Path, default=CONFIGS)
    args = parser.parse_args()
    result = {}
    for name in experiments(args.configs):
        result[name] = shapes(name, args.configs)
        n = result[name] if isinstance(result[name], str) else f"{len(result[name])} tensors"
        print(f"{name}: {n}", flush=True)
    args.out.write_text(json.dumps(result, indent=0))
    if args.compare is not None:
        problems = compare(result, json.loads(args.compare.read_text()))
        print("\n".join(problems) if problems else
              f"{len(result)} experiments: identical keys, order and shapes")
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
