"""YAML configs of the training commands: reading, merging into defaults, checking types.

Shared by ``mae-nb hsi`` and ``mae-nb mae``, with the files a run writes.

A command keeps its own defaults and checks (:mod:`mae_nb.cli.hsi_config`,
:mod:`mae_nb.cli.mae_config`); what they share is here: :func:`read_config` merges a file into
the defaults, refusing unknown keys (listing the known ones) and values of the wrong type, with
a :class:`~mae_nb.errors.ConfigError` that names the key (``train.lr``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Collection, Mapping

from mae_nb.errors import ConfigError, OutputExistsError

__all__ = [
    "check_type",
    "config_command",
    "config_value",
    "merge",
    "read_config",
    "refuse",
    "refuse_existing",
    "write_default_config",
    "write_json",
]


def read_config(
    path: str | Path | None,
    defaults: dict,
    command: str,
    *,
    free: Collection[tuple[str, ...]] = (),
    any_type: Collection[str] = (),
    moved: Mapping[str, str] | None = None,
) -> dict:
    """``defaults`` updated with the YAML file at ``path`` (a copy of them for ``None``).

    ``free``: sections whose keys are not fixed (e.g. a model's keyword arguments);
    ``any_type``: keys whose value may have another type than the default's (checked by the
    command); ``moved``: old key -> where it went. ``command`` is named in the hint for a
    missing file (``mae-nb hsi config PATH`` writes one).
    """
    import yaml

    if path is None:
        return copy.deepcopy(defaults)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"no config file at {path}; write one with: mae-nb {command} config {path}"
        )
    try:
        given = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return merge(defaults, given, "", free=free, any_type=any_type, moved=moved or {})


def merge(
    defaults: dict,
    given: Any,
    where: str = "",
    *,
    free: Collection[tuple[str, ...]] = (),
    any_type: Collection[str] = (),
    moved: Mapping[str, str] | None = None,
) -> dict:
    """A copy of ``defaults`` with the values of ``given`` (a mapping), section by section."""
    moved = moved or {}
    if not isinstance(given, dict):
        raise ConfigError(
            f"config section {where or 'top level'} must be a mapping, got {type(given).__name__}"
        )
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in defaults and path in moved:
            raise ConfigError(f"config key {path!r} is now {moved[path]!r}")
        if key not in defaults:
            raise ConfigError(
                f"unknown config key {path!r}; known keys{' in ' + where if where else ''}: "
                + ", ".join(defaults)
            )
        default = defaults[key]
        if isinstance(default, dict) and tuple(path.split(".")) not in free:
            out[key] = merge(default, value or {}, path, free=free, any_type=any_type, moved=moved)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"config key {path!r} must be a mapping of keyword arguments, got {value!r}"
                )
            out[key] = dict(value)
        elif path in any_type:
            out[key] = value
        else:
            out[key] = check_type(path, value, default)
    return out


def check_type(path: str, value: Any, default: Any) -> Any:
    """``value`` if it has the type of ``default`` (None always passes), else a ConfigError."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {path!r} must be true or false, got {value!r}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {path!r} must be a number, got {value!r}")
        if isinstance(default, int) and int(value) != value:
            raise ConfigError(f"config key {path!r} must be a whole number, got {value!r}")
    elif isinstance(default, list) and not isinstance(value, list):
        raise ConfigError(f"config key {path!r} must be a list like {default}, got {value!r}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"config key {path!r} must be text, got {value!r}")
    return value


def config_value(config: dict, key: str) -> Any:
    """``config["section"]["name"]`` for ``key="section.name"`` (or a top-level key)."""
    section, _, name = key.partition(".")
    return config[section][name] if name else config[section]


def refuse(key: str, value: Any, expected: str) -> None:
    """Raise the ConfigError for ``key``: what it must be, what it was."""
    raise ConfigError(f"config key {key!r} must be {expected}, got {value!r}")


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """Refuse to replace any of ``paths`` that exists, unless ``overwrite``."""
    for p in paths:
        if p.exists() and not overwrite:
            raise OutputExistsError(
                f"{p} already exists; pass --overwrite to replace it (or change 'output')"
            )


def write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON at ``path`` (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")


def write_default_config(
    out: Path, defaults: dict, command: str, overwrite: bool, actions: str | None = None
) -> int:
    """Write ``defaults`` to ``out`` as YAML with a header saying how to run ``command``
    (``actions``: the actions the config drives, e.g. ``"finetune"``; default: all of them)."""
    import yaml

    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    if actions is None:
        actions = {"hsi": "pretrain|finetune|evaluate", "mae": "pretrain|evaluate"}[command]
    text = (
        f"# mae-nb {command} config: every key with its default. Remove what you do not change.\n"
        f"# Run: mae-nb {command} {actions} --config THIS.yaml"
        "  (or under torchrun -m mae_nb)\n" + yaml.safe_dump(defaults, sort_keys=False)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


def config_command(action: Callable, load: Callable[[Any], dict]) -> Callable:
    """The ``func`` of a config-driven action: load and check the whole config (``load``)
    before any work, set up the process (:class:`~mae_nb.distributed.Distributed`: one
    process, or one of torchrun's), run ``action(config, args, dist)``, report the time."""

    def run(args) -> int:
        import time

        from mae_nb.distributed import Distributed

        config = load(args.config)  # the whole config, checked before any work
        dist = Distributed(config["device"])
        start = time.perf_counter()
        code = action(config, args, dist)
        if dist.main:
            print(f"done in {time.perf_counter() - start:.1f} s")
        return code

    return run


def with_train_threads(config: dict, run: Callable[[], int]) -> int:
    """Run ``run()`` with torch's thread count set from ``train.threads`` (0 or unset: unchanged).

    The previous count is restored afterwards, so a notebook or test process keeps its own.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        if config["train"].get("threads"):
            torch.set_num_threads(config["train"]["threads"])
        return run()
    finally:
        torch.set_num_threads(threads)
