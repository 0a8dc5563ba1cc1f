"""The LibYAML loader Loom composes with reads every document exactly as OmegaConf's own loader does."""

from __future__ import annotations

import pytest
import yaml
from omegaconf import _utils

from framework.loading.fastyaml import fast_loader, libyaml_loader

pytestmark = pytest.mark.skipif(fast_loader() is None, reason="PyYAML without LibYAML")

DOCUMENTS = {
    "floats": "a: 1e3\nb: 1_000.5\nc: .inf\nd: -.Inf\ne: .nan\nf: 1.\ng: 6.02e+23\nh: 10:30.5\n",
    "ints and bools": "a: 0x1F\nb: 0o17\nc: 1_000\nd: yes\ne: off\nf: ~\ng: null\nh: True\n",
    "timestamps stay strings": "a: 2026-11-27\nb: 2026-11-27T10:00:00Z\n",
    "strings": "a: '1e3'\nb: \"x: y\"\nc: |\n  two\n  lines\nd: >-\n  folded\n  text\ne: ${oc.env:X}\n",
    "nested": "a:\n  b: [1, 2.5, {c: d}]\n  e: {f: [g, h]}\nlist:\n  - x\n  - y: z\n",
    "anchors": "base: &b {x: 1}\nuse: *b\nmerged:\n  <<: *b\n  y: 2\n",
    "pathlib tag": "p: !!python/object/apply:pathlib.Path ['a', 'b']\n",
}
REFUSED = {
    "duplicate key": "a: 1\nb: 2\na: 3\n",
    "python tag": "x: !!python/object/apply:os.system ['true']\n",
    "unbalanced": "a: [1, 2\nb: 3\n",
    "bad indent": "a:\n  b: 1\n c: 2\n",
}


@pytest.mark.parametrize("text", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_reads_like_omegaconf(text):
    assert yaml.load(text, Loader=fast_loader()) == yaml.load(text, Loader=_utils.get_yaml_loader())


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_refuses_like_omegaconf(text):
    with pytest.raises(yaml.YAMLError) as ours:
        yaml.load(text, Loader=fast_loader())
    with pytest.raises(yaml.YAMLError) as theirs:
        yaml.load(text, Loader=_utils.get_yaml_loader())
    assert type(ours.value) is type(theirs.value)
    assert ours.value.context == theirs.value.context
    mark, their_mark = ours.value.problem_mark, theirs.value.problem_mark
    assert (mark.line, mark.column) == (their_mark.line, their_mark.column)
    if isinstance(ours.value, yaml.constructor.ConstructorError):
        assert ours.value.problem == theirs.value.problem
    # (LibYAML words syntax errors its own way: "did not find expected key" for "expected <block
    # end>, but found '<block mapping start>'"; same place, same context.)


def test_swapped_in_only_inside_the_block():
    from omegaconf import OmegaConf, basecontainer

    original = _utils.get_yaml_loader
    with libyaml_loader():
        assert _utils.get_yaml_loader() is fast_loader()
        assert basecontainer.get_yaml_loader() is fast_loader()
        assert OmegaConf.create("a: 1e3").a == 1000.0
    assert _utils.get_yaml_loader is original and basecontainer.get_yaml_loader is original
