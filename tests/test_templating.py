"""The shared jinja2 environment: strict about undefined names, compiled once per template source."""
import jinja2
import pytest

from services.templating import environment


def test_undefined_names_are_errors_not_empty_strings():
    env = environment(jinja2.DictLoader({"t": "port {{ port }}\n"}))
    assert env.get_template("t").render(port=873) == "port 873\n"
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("t").render()


def test_a_second_process_loads_the_compiled_template(tmp_path, monkeypatch):
    """What the bytecode cache is for: a fresh environment finds the template already compiled."""
    source = f"{tmp_path} {{{{ x }}}}\n"          # a source no other test compiles
    compiled = []
    original = jinja2.Environment.compile

    def counting(self, *args, **kw):
        compiled.append(1)
        return original(self, *args, **kw)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    for _ in range(2):
        env = environment(jinja2.DictLoader({"t": source}))   # as a new `si` process would
        assert env.get_template("t").render(x=1) == f"{tmp_path} 1\n"
    assert len(compiled) == 1, "the second environment compiled the template again"
