"""The method registry: every method module registers what it defines; every method's hyper-parameters
are typed and defaulted in its constructor, listed by `selfsup methods --json`."""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

import pytest

import selfsup.methods
from selfsup.methods import METHODS, Method
from selfsup.methods.base import method_args, method_arguments, method_defaults
from selfsup.utils.errors import ConfigError

# Modules of shared parts (base classes, momentum updates, queues, multi-crop): they define no method.
SUPPORT = {"base", "momentum", "multicrop", "queues", "text_base", "video_base", "volume_base", "adversarial"}


def _methods_defined_in(module) -> list[type[Method]]:
    return [obj for obj in vars(module).values() if inspect.isclass(obj) and issubclass(obj, Method)
            and obj.__module__ == module.__name__ and "name" in vars(obj)]


@pytest.mark.parametrize("name", [m.name for m in pkgutil.iter_modules(selfsup.methods.__path__)])
def test_every_method_module_registers_the_methods_it_defines(name):
    module = importlib.import_module(f"selfsup.methods.{name}")
    defined = _methods_defined_in(module)
    assert bool(defined) != (name in SUPPORT), f"{name}: a method module defines a method; a support module none"
    for cls in defined:
        assert METHODS.get(cls.name) is cls, f"{cls.__name__} ({name}.py) is not registered"


@pytest.mark.parametrize("name", METHODS.names())
def test_every_hyper_parameter_is_typed_and_defaulted_in_the_constructor(name):
    cls = METHODS.get(name)
    arguments = method_arguments(cls)
    assert list(arguments) == [p for p in inspect.signature(cls.__init__).parameters if p not in cls.BUILT_FROM]
    assert all(a.annotation is not inspect.Parameter.empty and a.annotation is not None for a in arguments.values())
    assert method_args(cls, {}) == method_defaults(cls)


def test_method_args_are_converted_by_their_annotation_and_refused_when_they_do_not_fit():
    simclr = METHODS.get("simclr")
    assert method_args(simclr, {"temperature": "0.25", "hidden_dim": None})["temperature"] == 0.25
    assert method_args(METHODS.get("corruption"), {"severity": [0.5, 1]})["severity"] == (0.5, 1.0)
    with pytest.raises(ConfigError, match="method_args.projection_dim: cannot read 1.5 as int"):
        method_args(simclr, {"projection_dim": 1.5})
    with pytest.raises(ConfigError, match="has no argument queue_size"):
        method_args(simclr, {"queue_size": 3})


def test_methods_json_lists_every_argument_with_its_type_and_default(capsys):
    from selfsup.cli import main

    assert main(["methods", "--json"]) == 0
    listed = {m["name"]: m["defaults"] for m in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["methods"]}
    assert sorted(listed) == METHODS.names()
    for name, defaults in listed.items():
        assert [a["name"] for a in defaults["arguments"]] == list(method_arguments(METHODS.get(name)))
        assert all({"type", "default"} <= set(a) for a in defaults["arguments"])
    moco = {a["name"]: a for a in listed["moco_v2"]["arguments"]}
    assert moco["queue_size"] == {"name": "queue_size", "type": "int", "default": 65536}
    assert listed["rubik_cube"]["args"]["permutations"] == method_defaults(METHODS.get("rubik_cube"))["permutations"]
