"""What every engine's release rule row shares (``engines/releases.py``): the version tuple and ``RuleRow``."""

from __future__ import annotations

Version = tuple[int, int, int]


class RuleRow:
    """What every release's rule row shares (the one shape of ``VllmRules``, ``SglangRules``,
    ``TransformersRules``): the first release it applies to, and its fields as a dict."""

    __slots__ = ()

    @property
    def first_text(self) -> str:
        return ".".join(map(str, self.first))

    def fields(self, leave_out: tuple[str, ...] = ()) -> dict:
        return ({f: getattr(self, f) for f in self.__slots__ if f != "first" and f not in leave_out}
                | {"first": self.first_text})

    def to_dict(self) -> dict:
        return self.fields()
