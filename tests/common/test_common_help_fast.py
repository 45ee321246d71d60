"""`--help` of every entry script exits 0 without importing the heavy modules (torch, transformers,
gensim, matplotlib, sklearn, pandas): argument parsing comes before heavy imports (fast --help)."""
import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location('help_times', os.path.join(REPO, 'bench', 'help_times.py'))
help_times = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(help_times)


def test_entry_scripts_are_found_in_every_folder():
    scripts = help_times.entry_scripts()
    assert {s.split(os.sep)[0] for s in scripts} == set(help_times.FOLDERS)
    assert {'lhsc/train.py', 'hsl/main.py', 'fhn/scripts/run.py', 'common/plot.py', 'common/diff.py'} <= set(scripts)
    assert 'common/errors.py' not in scripts  # no __main__ block: a library module


@pytest.mark.parametrize('script', help_times.entry_scripts())
def test_help_exits_0_without_heavy_imports(script, tmp_path):
    code, heavy, output = help_times.probe_help(script, str(tmp_path))
    assert code == 0, output[-2000:]
    assert 'usage:' in output
    assert heavy == [], '%s --help imported %s' % (script, ', '.join(heavy))
