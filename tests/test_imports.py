"""Importing the library's front doors must stay cheap: torch loads only when the engine is used."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["d2l_memory", "d2l_memory.store", "d2l_memory.memory", "d2l_memory.cli",
                                    "d2l_memory.integrations.langchain"])
def test_import_does_not_load_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"], f"importing {module} loaded torch/transformers: {out}"
