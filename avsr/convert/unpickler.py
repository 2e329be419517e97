"""A restricted unpickler for checkpoints that pickle foreign classes (fairseq, argparse,
omegaconf), usable as ``torch.load(..., weights_only=False, pickle_module=unpickler)``.

Only tensor and storage rebuilders, plain containers and numpy arrays are rebuilt for real.
Every other global becomes an inert :class:`Stub` subclass named after it: instantiating or
restoring one only records its arguments and state, so no code from the checkpoint runs and
fairseq need not be installed. :func:`to_plain` turns stubbed ``omegaconf`` configs and
``argparse.Namespace`` objects into dicts.
"""

from __future__ import annotations

import pickle
from typing import Any

import torch

__all__ = ["Stub", "Unpickler", "load", "loads", "to_plain", "UnpicklingError"]

UnpicklingError = pickle.UnpicklingError

# globals rebuilt for real (module -> names; "*" = any name starting with "_rebuild")
_ALLOWED: dict[str, set[str]] = {
    "collections": {"OrderedDict", "defaultdict", "deque"},
    "builtins": {"set", "frozenset", "slice", "range", "complex", "bytearray", "object", "list",
                 "dict", "tuple", "int", "float", "bool", "str", "bytes"},
    "copyreg": {"_reconstructor"},
    "_codecs": {"encode"},
    "torch": {"Size", "device", "Tensor", "strided", "sparse_coo", "_sparse_csr"},
    "torch._utils": {"*"},
    "torch._tensor": {"_rebuild_from_type_v2"},
    "torch.nn.parameter": {"Parameter"},
    "torch.serialization": {"_get_layout"},
    "numpy": {"ndarray", "dtype"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
}


class Stub:
    """Stand-in for a class the unpickler will not import.

    Attributes:
        _stub_args: positional arguments it was called with (``REDUCE`` / ``NEWOBJ``).
        _stub_state: the state pickle restored (``BUILD``), if not a dict.
        _stub_items / _stub_list: items set on it as a mapping / sequence.
    Dict states become attributes, as for an ordinary object.
    """

    _stub_name = "Stub"

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = object.__new__(cls)
        object.__setattr__(obj, "_stub_args", args)
        object.__setattr__(obj, "_stub_items", {})
        object.__setattr__(obj, "_stub_list", [])
        object.__setattr__(obj, "_stub_state", None)
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # nothing runs
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict, slots)
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            object.__setattr__(self, "_stub_state", state)

    # copyreg._reconstructor builds with object.__new__, skipping __new__: create lazily
    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_stub_items", {})[key] = value

    def append(self, value: Any) -> None:  # noqa: D102 - pickle APPENDS
        self.__dict__.setdefault("_stub_list", []).append(value)

    def extend(self, values: Any) -> None:  # noqa: D102
        self.__dict__.setdefault("_stub_list", []).extend(values)

    def __reduce__(self):  # pragma: no cover - stubs are not re-pickled
        raise TypeError(f"{self._stub_name} is an inert stand-in and cannot be pickled")

    def __repr__(self) -> str:
        return f"<stub {self._stub_name}>"


_STUBS: dict[str, type[Stub]] = {}


def _stub_class(module: str, name: str) -> type[Stub]:
    key = f"{module}.{name}"
    if key not in _STUBS:
        _STUBS[key] = type(name, (Stub,), {"_stub_name": key, "__module__": "avsr.stub"})
    return _STUBS[key]


def _allowed(module: str, name: str) -> bool:
    names = _ALLOWED.get(module)
    if names is None:
        return False
    if "*" in names and name.startswith("_rebuild"):
        return True
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return True
    return name in names


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that imports only allow-listed globals; see the module doc."""

    def find_class(self, module: str, name: str) -> Any:
        if _allowed(module, name):
            return super().find_class(module, name)
        return _stub_class(module, name)


def load(file, **kwargs: Any) -> Any:
    """``pickle.load`` with :class:`Unpickler`."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    """``pickle.loads`` with :class:`Unpickler`."""
    import io

    return load(io.BytesIO(data), **kwargs)


def to_plain(obj: Any) -> Any:
    """Stubbed configs to plain Python: omegaconf ``DictConfig`` / ``ListConfig`` / value nodes
    (their ``_content`` / ``_val``), ``argparse.Namespace`` and other stubs (their attributes);
    dicts, lists and tuples recursively; everything else unchanged."""
    if isinstance(obj, Stub):
        d = obj.__dict__
        if "_content" in d:
            return to_plain(d["_content"])
        if "_val" in d:
            return to_plain(d["_val"])
        if d.get("_stub_items"):
            return {k: to_plain(v) for k, v in d["_stub_items"].items()}
        if d.get("_stub_list"):
            return [to_plain(v) for v in d["_stub_list"]]
        return {k: to_plain(v) for k, v in d.items() if not k.startswith("_stub_")}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj
