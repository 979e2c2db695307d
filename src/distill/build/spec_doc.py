"""The key reference of docs/spec.md, written from ``spec.FIELDS`` (a test keeps the two
equal): regenerate with
``python -c "from distill.build.spec_doc import reference_markdown; print(reference_markdown())"``.
"""

from __future__ import annotations

from distill.build.spec import FIELDS, Merge


def reference_markdown() -> str:
    """The key reference of docs/spec.md, from FIELDS (a test keeps the two equal)."""
    parts = []
    for key, spec_field in FIELDS.items():
        text = f"### `{key}`\n\n{spec_field.help[0].upper()}{spec_field.help[1:]}.\n"
        if key != "extends":
            text += f"\n*With `extends`:* {_MERGE_TEXT[spec_field.merge]}.\n"
        if spec_field.example:
            text += f"\n```yaml\n{spec_field.example}\n```\n"
        parts.append(text)
    return "\n".join(parts)


_MERGE_TEXT = {
    Merge.REPLACE: "this spec's value replaces the base's",
    Merge.EXTEND: "the base's items come first, then this spec's (repeats dropped)",
    Merge.UPDATE: "keys are merged; this spec's value wins for a key both set",
    Merge.BY_NAME: "a user or group replaces the base's of the same name; others are added",
}
