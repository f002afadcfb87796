"""Reading the examples out of a docs page, for the tests that run them."""

from __future__ import annotations

import re

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def examples(
    text: str, output_langs: tuple[str, ...] = ("", "text")
) -> list[tuple[str, str | None]]:
    """Each python block with the output block that directly follows it, if any.

    An output block is a fence of one of *output_langs* with nothing but
    whitespace between it and the python block.
    """
    blocks = [(m[1], m[2], m.start(), m.end()) for m in FENCE.finditer(text)]
    found = []
    for i, (lang, body, _, end) in enumerate(blocks):
        if lang != "python":
            continue
        expected = None
        if i + 1 < len(blocks):
            next_lang, next_body, next_start, _ = blocks[i + 1]
            if next_lang in output_langs and not text[end:next_start].strip():
                expected = next_body
        found.append((body, expected))
    return found
