#!/usr/bin/env python3
"""Summarize a .pte with the reference (executorch 1.5.1) deserializer.

The output has the keys `ptekit inspect --json` promises (see README): an independent
reading of the file to test ptekit's reader against. Usage: ref_summary.py FILE.pte
"""

import collections
import hashlib
import json
import os
import sys


def summarize(path):
    from executorch.exir._serialize._flatbuffer_program import _flatbuffer_to_program
    from executorch.exir._serialize._program import _get_extended_header

    data = open(path, "rb").read()
    eh = _get_extended_header(data)
    program = _flatbuffer_to_program(data[: eh.program_size] if eh else data)
    plans = []
    for plan in program.execution_plan:
        kinds = collections.Counter(type(v.val).__name__ for v in plan.values)
        instrs = collections.Counter(
            type(i.instr_args).__name__ for c in plan.chains for i in c.instructions
        )
        plans.append(
            {
                "name": plan.name,
                "values": len(plan.values),
                "value_kinds": dict(sorted(kinds.items())),
                "instructions": dict(sorted(instrs.items())),
                "operators": [
                    f"{op.name}.{op.overload}" if op.overload else op.name
                    for op in plan.operators
                ],
                "delegates": [
                    {"id": d.id, "compile_specs": [c.key for c in d.compile_specs]}
                    for d in plan.delegates
                ],
                "inputs": list(plan.inputs),
                "outputs": list(plan.outputs),
                "non_const_buffer_sizes": list(plan.non_const_buffer_sizes),
                "chains": len(plan.chains),
            }
        )
    cs = program.constant_segment
    return {
        "file": os.path.basename(path),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "version": program.version,
        "extended_header": None
        if eh is None
        else {
            "program_size": eh.program_size,
            "segment_base_offset": eh.segment_base_offset,
            "segment_data_size": eh.segment_data_size or 0,
        },
        "segments": [{"offset": s.offset, "size": s.size} for s in program.segments],
        "constant_buffer_len": len(program.constant_buffer),
        "backend_delegate_data_len": len(program.backend_delegate_data),
        "constant_segment": {"segment_index": cs.segment_index, "offsets": len(cs.offsets)},
        "mutable_data_segments": [
            {"segment_index": m.segment_index, "offsets": len(m.offsets)}
            for m in (program.mutable_data_segments or [])
        ],
        "named_data": [
            {"key": n.key, "segment_index": n.segment_index} for n in (program.named_data or [])
        ],
        "execution_plans": plans,
    }


if __name__ == "__main__":
    print(json.dumps(summarize(sys.argv[1]), indent=1, sort_keys=True))
