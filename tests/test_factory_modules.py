"""ModuleFactory and ModTreeFactory over the test package tests/data/modtree/mtpkg."""

from __future__ import annotations

import functools
import importlib
import os
import pathlib
import pickle
import sys
import textwrap

import pytest

from pexen import PexenWarning, sched
from pexen.factory import CollectionError, ModTreeFactory, ModuleFactory, get_callpath
from pexen.sched._naming import task_name
from pexen.sched.meta import SchedMeta, retrieve_meta

DATA = pathlib.Path(__file__).resolve().parent / "data" / "modtree"
PKG = DATA / "mtpkg"

# every task of mtpkg with metadata, sorted by call path
META_TASKS = [
    ("mtpkg", "alpha", "_private_task"),
    ("mtpkg", "alpha", "build"),
    ("mtpkg", "helpers", "imported_task"),
    ("mtpkg", "setup"),
    ("mtpkg", "sub", "beta", "use"),
]
# what match="test_*" adds
TEST_TASKS = [
    ("mtpkg", "alpha", "test_generated"),
    ("mtpkg", "alpha", "test_one"),
    ("mtpkg", "sub", "beta", "test_two"),
    ("mtpkg", "sub", "deep", "gamma", "test_three"),
    ("mtpkg", "test_in_init"),
]


def is_ours(name: str) -> bool:
    """Modules the tests import: the data package and packages made in tmp_path."""
    top = name.partition(".")[0]
    return top == "mtpkg" or top.startswith("ftmp")


@pytest.fixture(autouse=True)
def isolated_imports():
    """Undo what a test did to sys.path and sys.modules (for our modules only)."""
    saved_path = list(sys.path)
    yield
    sys.path[:] = saved_path
    for name in [name for name in sys.modules if is_ours(name)]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def on_path():
    """Put tests/data/modtree on sys.path, so mtpkg imports by name."""
    sys.path.insert(0, str(DATA))


def paths(tasks):
    return [get_callpath(task) for task in tasks]


def collect_tree(root, match=None):
    """Collect *root* with a fresh ModTreeFactory, expecting mtpkg.broken's error."""
    factory = ModTreeFactory(match=match)
    with pytest.warns(PexenWarning, match=r"ModTreeFactory: 1 item could not be "
                      r"collected \(first: cannot collect .*broken.py: RuntimeError"):
        tasks = list(factory(root))
    return factory, tasks


def make_package(base: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    """Write *files* (relative path -> source) below *base*; return *base*."""
    for rel, source in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return base


# -- ModuleFactory -------------------------------------------------------------


def test_module_factory_takes_callables_with_metadata_defined_in_the_module(on_path):
    import mtpkg.alpha

    tasks = list(ModuleFactory()(mtpkg.alpha))
    assert paths(tasks) == [("mtpkg", "alpha", "_private_task"),
                            ("mtpkg", "alpha", "build")]
    assert tasks[1] is mtpkg.alpha.build, "the function itself is the task"


def test_module_factory_match_adds_callables_by_name(on_path):
    import mtpkg.alpha

    assert paths(ModuleFactory(match="test_*")(mtpkg.alpha)) == [
        ("mtpkg", "alpha", "_private_task"),
        ("mtpkg", "alpha", "build"),
        ("mtpkg", "alpha", "test_generated"),
        ("mtpkg", "alpha", "test_one"),
    ]
    # even '*' takes nothing imported from elsewhere (join, imported_task,
    # make_test, func_meta), and an alias is the task it names, once, under
    # its own name; test_generated, made by a helper elsewhere for this
    # module, is this module's
    assert paths(ModuleFactory(match="*")(mtpkg.alpha)) == [
        ("mtpkg", "alpha", "Thing"),
        ("mtpkg", "alpha", "_private_task"),
        ("mtpkg", "alpha", "build"),
        ("mtpkg", "alpha", "helper"),
        ("mtpkg", "alpha", "test_generated"),
        ("mtpkg", "alpha", "test_one"),
    ]
    assert paths(ModuleFactory(match="[bh]*")(mtpkg.alpha))[-1] == (
        "mtpkg", "alpha", "helper")


def test_module_factory_takes_a_dotted_name_and_a_prefix(on_path):
    factory = ModuleFactory()
    factory.callpath_push("suite")
    assert paths(factory("mtpkg.sub.beta")) == [
        ("suite", "mtpkg", "sub", "beta", "use")]
    assert factory.callpath == ["suite"]


def test_module_factory_rejects_what_is_no_module():
    with pytest.raises(TypeError, match=r"expected a module or a dotted module name"):
        list(ModuleFactory()(42))
    with pytest.raises(TypeError, match=r"match=3: expected an fnmatch pattern"):
        ModuleFactory(match=3)


# -- ModuleFactory: callables that take no attributes ------------------------------

# Bound methods and builtins refuse attributes, so no call path can be recorded
# on them; a partial wrapping each is the task instead.
METHODS = textwrap.dedent("""\
    from pexen.sched.meta import assign_val, func_meta


    class Greeter:
        def __init__(self, word):
            self.word = word

        @func_meta(provides=["greeted"])
        def hello(self, shared):
            shared["greeting"] = self.word
            return self.word

        def bye(self):
            return "bye " + self.word

        def test_plain(self):
            return "plain"


    class Stubborn:
        \"\"\"A callable object that refuses attributes its own way.\"\"\"

        def __setattr__(self, name, value):
            raise RuntimeError(f"no {name} here")

        def __call__(self):
            return "stubborn"


    greeter = Greeter("hi")
    hello = func_meta(priority=1)(greeter.hello)  # the method's own metadata
    assign_val(Greeter.bye, requires=["greeted"])  # assigned at module level
    bye = Greeter("you").bye
    test_bound = greeter.test_plain  # no metadata: taken by match
    test_upper = "abc".upper  # a builtin method
    test_stubborn = Stubborn()


    def test_function():
        return "function"
""")
METHOD_TASKS = [
    ("ftmp_methods", "bye"),
    ("ftmp_methods", "hello"),
    ("ftmp_methods", "test_bound"),
    ("ftmp_methods", "test_function"),
    ("ftmp_methods", "test_stubborn"),
    ("ftmp_methods", "test_upper"),
]


@pytest.fixture
def methods_module(tmp_path):
    make_package(tmp_path, {"ftmp_methods.py": METHODS})
    sys.path.insert(0, str(tmp_path))
    return importlib.import_module("ftmp_methods")


def test_bound_methods_and_builtins_are_collected_through_a_partial(methods_module):
    mod = methods_module
    factory = ModuleFactory(match="test_*")
    tasks = list(factory(mod))  # no PexenWarning: nothing failed
    assert factory.errors == []
    assert paths(tasks) == METHOD_TASKS
    by_name = {get_callpath(task)[-1]: task for task in tasks}
    assert by_name["test_function"] is mod.test_function, "a function is itself"
    for name in ("bye", "hello", "test_bound", "test_stubborn", "test_upper"):
        task = by_name[name]
        assert isinstance(task, functools.partial)
        assert task.func is getattr(mod, name)
        assert (task.args, task.keywords) == ((), {})
        assert task_name(task) == f"ftmp_methods/{name}"
    # the partial carries an equal copy of the method's metadata, not the
    # method's (= its function's, shared by every instance) object itself
    assert retrieve_meta(by_name["hello"]) == SchedMeta(provides={"greeted"},
                                                         priority=1)
    assert retrieve_meta(by_name["hello"]) is not retrieve_meta(mod.hello)
    assert retrieve_meta(by_name["bye"]) == SchedMeta(requires={"greeted"})
    assert retrieve_meta(by_name["test_upper"]) is None
    # nothing was recorded on the methods' functions
    assert get_callpath(mod.Greeter.hello) == ()


def test_bound_method_tasks_run_with_their_metadata_and_pickle(methods_module):
    tasks = list(ModTreeFactory(match="test_*")(methods_module.__file__))
    assert paths(tasks) == METHOD_TASKS
    results = {get_callpath(res.task)[-1]: res
               for res in sched.Sched(tasks).run(pool=sched.pool.InlineWorkerPool())}
    assert {name: res.ret for name, res in results.items()} == {
        "bye": "bye you", "hello": "hi", "test_bound": "plain",
        "test_function": "function", "test_stubborn": "stubborn",
        "test_upper": "ABC"}
    assert results["hello"].shared == {"greeting": "hi"}, "shared goes first"
    for task in tasks:  # as process pools under spawn need
        name = get_callpath(task)[-1]
        copy = pickle.loads(pickle.dumps(task))
        assert get_callpath(copy) == get_callpath(task)
        assert retrieve_meta(copy) == retrieve_meta(task)
        assert copy(*({},) if name == "hello" else ()) == results[name].ret


def test_a_callable_that_cannot_be_made_a_task_is_recorded_and_the_rest_collected(
        methods_module, monkeypatch):
    def retrieve_meta(obj):
        if obj is methods_module.test_upper:
            raise RuntimeError("hostile metadata lookup")
        return sched.meta.retrieve_meta(obj)

    monkeypatch.setattr("pexen.factory._module.retrieve_meta", retrieve_meta)
    factory = ModuleFactory(match="test_*")
    with pytest.warns(PexenWarning, match=r"1 item could not be collected \(first: "
                      r"cannot collect ftmp_methods\.test_upper: RuntimeError: "
                      r"hostile metadata lookup\)"):
        tasks = list(factory(methods_module))
    assert paths(tasks) == METHOD_TASKS[:-1]
    (error,) = factory.errors
    assert error.path == "ftmp_methods.test_upper"
    assert error.callpath == ("ftmp_methods", "test_upper")
    assert isinstance(error.exc, RuntimeError)


# -- ModTreeFactory: roots ---------------------------------------------------------


def test_tree_from_a_dotted_name(on_path):
    _, tasks = collect_tree("mtpkg")
    assert paths(tasks) == META_TASKS
    assert "mtpkg.__main__" not in sys.modules, "__main__ must not be imported"
    assert "mtpkg.notapkg" not in sys.modules


def test_tree_with_match(on_path):
    _, tasks = collect_tree("mtpkg", match="test_*")
    assert paths(tasks) == sorted(META_TASKS + TEST_TASKS)
    assert [task() for task in tasks if get_callpath(task) in TEST_TASKS] == [
        7, 1, 2, 3, "init"]


def test_tree_from_a_package_directory_puts_its_parent_on_sys_path():
    assert str(DATA) not in sys.path
    _, tasks = collect_tree(PKG)
    assert paths(tasks) == META_TASKS
    assert sys.path[0] == str(DATA)
    # modules are registered under their real dotted names
    alpha = sys.modules["mtpkg.alpha"]
    assert os.path.samefile(alpha.__file__, PKG / "alpha.py")
    assert sys.modules["mtpkg.sub.deep.gamma"].__name__ == "mtpkg.sub.deep.gamma"
    # ... so their functions pickle by reference, as spawned workers need
    payload = pickle.dumps(alpha.build)
    assert b"mtpkg.alpha" in payload
    assert pickle.loads(payload) is alpha.build


def test_tree_from_a_path_string_and_a_directory_of_modules(monkeypatch):
    monkeypatch.chdir(DATA)
    _, tasks = collect_tree("mtpkg")  # an existing path wins over a module name
    assert paths(tasks) == META_TASKS
    # a directory without __init__.py is a sys.path entry: its modules and
    # packages are collected by their top-level names
    _, tasks = collect_tree(str(DATA))
    assert paths(tasks) == META_TASKS


def test_tree_from_a_module_object_and_a_module_file(on_path):
    import mtpkg.sub

    assert paths(ModTreeFactory()(mtpkg.sub)) == [("mtpkg", "sub", "beta", "use")]
    tasks = list(ModTreeFactory(match="*")(PKG / "sub" / "deep" / "gamma.py"))
    assert paths(tasks) == [("mtpkg", "sub", "deep", "gamma", "test_three")]


def test_bad_roots_raise():
    with pytest.raises(ModuleNotFoundError, match="ftmp_no_such_module"):
        list(ModTreeFactory()("ftmp_no_such_module"))
    with pytest.raises(FileNotFoundError):
        list(ModTreeFactory()(PKG / "nowhere.py"))
    with pytest.raises(ValueError, match=r"expected a package directory, a directory "
                       r"of modules or a \.py file"):
        list(ModTreeFactory()(DATA / "README.md"))
    with pytest.raises(TypeError, match="expected a module, a dotted module name"):
        list(ModTreeFactory()(3.5))


def test_a_directory_name_that_is_no_python_name(tmp_path):
    make_package(tmp_path, {"my-pkg/__init__.py": ""})
    with pytest.raises(ValueError, match=r"'my-pkg' is not a valid Python name"):
        list(ModTreeFactory()(tmp_path / "my-pkg"))


# -- ModTreeFactory: errors and reuse ---------------------------------------------


def test_a_module_failing_to_import_is_recorded_and_collection_goes_on(on_path):
    factory, tasks = collect_tree("mtpkg")
    assert len(tasks) == len(META_TASKS)
    (error,) = factory.errors
    assert isinstance(error, CollectionError)
    assert os.path.samefile(error.path, PKG / "broken.py")
    assert error.callpath == ("mtpkg", "broken")
    assert isinstance(error.exc, RuntimeError)
    assert 'broken.py", line 3, in <module>' in error.traceback
    assert error.traceback.endswith("RuntimeError: broken on purpose\n")
    assert "mtpkg.broken" not in sys.modules


def test_the_tree_factory_is_reusable(on_path):
    factory = ModTreeFactory(match="test_*")
    with pytest.warns(PexenWarning):
        first = list(factory("mtpkg"))
    first_errors = [(e.path, e.callpath, type(e.exc)) for e in factory.errors]
    with pytest.warns(PexenWarning):
        second = list(factory("mtpkg"))
    assert second == first, "the same function objects, in the same order"
    assert paths(second) == paths(first)
    assert [(e.path, e.callpath, type(e.exc)) for e in factory.errors] == first_errors


def test_syntax_errors_exits_and_broken_packages_are_recorded(tmp_path):
    make_package(tmp_path, {
        "ftmp_errs/__init__.py": "",
        "ftmp_errs/a_syntax.py": "def broken(:\n",
        "ftmp_errs/b_exit.py": "raise SystemExit(2)\n",
        "ftmp_errs/c_missing.py": "import ftmp_not_installed\n",
        "ftmp_errs/d_badpkg/__init__.py": "1 / 0\n",
        "ftmp_errs/d_badpkg/never.py": "raise AssertionError('not reached')\n",
        "ftmp_errs/e_fine.py": "def test_ok():\n    return 'ok'\n",
    })
    factory = ModTreeFactory(match="test_*")
    with pytest.warns(PexenWarning, match="4 items could not be collected"):
        tasks = list(factory(tmp_path / "ftmp_errs"))
    assert paths(tasks) == [("ftmp_errs", "e_fine", "test_ok")]
    assert [(e.callpath, type(e.exc)) for e in factory.errors] == [
        (("ftmp_errs", "a_syntax"), SyntaxError),
        (("ftmp_errs", "b_exit"), SystemExit),
        (("ftmp_errs", "c_missing"), ModuleNotFoundError),
        (("ftmp_errs", "d_badpkg"), ZeroDivisionError),
    ]
    assert factory.errors[3].path == str(tmp_path / "ftmp_errs/d_badpkg/__init__.py")


def test_a_root_module_that_fails_is_recorded_not_raised(tmp_path):
    make_package(tmp_path, {"ftmp_bad_root.py": "raise ValueError('no')\n"})
    sys.path.insert(0, str(tmp_path))
    factory = ModTreeFactory()
    with pytest.warns(PexenWarning):
        assert list(factory("ftmp_bad_root")) == []
    assert factory.errors[0].path == str(tmp_path / "ftmp_bad_root.py")
    assert isinstance(factory.errors[0].exc, ValueError)


def test_a_module_name_taken_by_another_file_is_recorded(tmp_path):
    make_package(tmp_path, {
        "one/ftmp_clash.py": "def test_one():\n    pass\n",
        "two/ftmp_clash.py": "def test_two():\n    pass\n",
    })
    assert paths(ModTreeFactory(match="test_*")(tmp_path / "one")) == [
        ("ftmp_clash", "test_one")]
    factory = ModTreeFactory(match="test_*")
    with pytest.warns(PexenWarning, match="1 item could not be collected"):
        assert list(factory(tmp_path / "two" / "ftmp_clash.py")) == []
    error = factory.errors[0]
    assert isinstance(error.exc, ImportError)
    assert "module 'ftmp_clash' is already imported from" in str(error.exc)
    assert "rename one of them" in str(error.exc)


def test_modules_created_after_a_first_walk_are_found(tmp_path):
    make_package(tmp_path, {"ftmp_grow/__init__.py": "",
                            "ftmp_grow/a.py": "def test_a():\n    pass\n"})
    factory = ModTreeFactory(match="test_*")
    assert len(list(factory(tmp_path / "ftmp_grow"))) == 1
    make_package(tmp_path, {"ftmp_grow/b.py": "def test_b():\n    pass\n"})
    assert paths(factory(tmp_path / "ftmp_grow")) == [
        ("ftmp_grow", "a", "test_a"), ("ftmp_grow", "b", "test_b")]


def test_tree_tasks_run_through_sched_with_their_metadata(on_path):
    _, tasks = collect_tree("mtpkg")
    results = {get_callpath(res.task): res
               for res in sched.Sched(tasks).run(pool=sched.pool.InlineWorkerPool())}
    assert all(res.excinfo is None for res in results.values())
    assert results[("mtpkg", "sub", "beta", "use")].ret == 20
    assert results[("mtpkg", "sub", "beta", "use")].shared == {"root": 1, "alpha": 2}
