"""The resolved policy: what a policy does to every attribute of PS3.15 Table E.1-1.

One row per table entry (tag, keyword, name, the Basic Profile code, the code once the
policy's options apply, the operation performed and the rule it comes from). ``dicomveil
profile show`` prints it; the console shows it as a page.
"""

from __future__ import annotations

from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag

from dicomveil.engine.rules import compile_policy, effective_action
from dicomveil.profile.policy import Policy
from dicomveil.profile.table import rows

__all__ = ["resolved_rows"]


def resolved_rows(policy: Policy) -> list[dict[str, str]]:
    """Return the resolved action of ``policy`` for every attribute of Table E.1-1."""
    compiled = compile_policy(policy)
    records = []
    for row in rows():
        code = effective_action(row.basic, row.options, policy.options)
        if row.tag == "odd" or "x" in row.tag:
            op, source, keyword = "private / repeating group", "", ""
        else:
            tag = int(row.tag, 16)
            vr = dictionary_VR(tag).split(" or ")[0] if dictionary_has_tag(tag) else "UN"
            rule = compiled.rule(tag, vr)
            op, source = rule.op.value, rule.source
            keyword = keyword_for_tag(tag) or ""
        records.append(
            {
                "tag": f"({row.tag[:4]},{row.tag[4:]})".upper().replace("X", "x"),
                "keyword": keyword,
                "name": row.name,
                "basic": row.basic,
                "effective": code,
                "operation": op,
                "rule": source,
            }
        )
    return records
