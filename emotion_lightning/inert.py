"""Settings that change nothing as given (a strength whose probability is 0, a distillation knob
without a teacher): named, so that runs or sweeps differing only in them are not mistaken for
a comparison."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence


def plain_value(value):
    """A range as a list (tuple, list or OmegaConf's ListConfig), any other value as it is."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value


def signature_defaults(owner: Callable) -> dict:
    """``{parameter: default}`` of ``owner``'s signature (a class: its constructor's)."""
    return {k: p.default for k, p in inspect.signature(owner).parameters.items()}


def set_in_vain(defaults: Mapping, values: Mapping, gated: Iterable[tuple[str, str]],
                prefix: str = "") -> list[str]:
    """``"<prefix>key=value (why)"`` for each ``(key, why)`` of ``gated`` whose value in
    ``values`` differs from its entry in ``defaults`` (:func:`signature_defaults`)."""
    return [f"{prefix}{key}={plain_value(values[key])} ({why})" for key, why in gated
            if key in values and plain_value(values[key]) != plain_value(defaults[key])]
