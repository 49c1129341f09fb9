"""No client text is executed, run by a shell, reaches SQL as anything but a bound value, or
is rendered into a program: statically (every risky call in service/ and generator_core/ is
on an allow list), by property tests on the request models and the rendered programs, and
over HTTP against the directory's keyed server (conftest.py).
"""
from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from generator_core import OPERATORS, GenerationError, GenerationSpec, generate
from helpers import HI, LO, messages
from service.app import create_app
from service.schemas import SampleRequest
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"min_flops": LO, "max_flops": HI, "validate": False, "seed": 1}


# Calls that run code, start processes, load native code or unpickle. Any of them in
# service/ or generator_core/ must be listed in ALLOWED with why no client text reaches it.
RISKY = {"eval", "exec", "compile", "__import__", "breakpoint", "os.system", "os.popen", "os.startfile",
         "os.posix_spawn", "os.posix_spawnp", "pty.spawn", "pickle.load", "pickle.loads", "pickle.Unpickler",
         "_pickle.loads", "marshal.load", "marshal.loads", "shelve.open", "dill.load", "dill.loads",
         "yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all", "torch.load",
         "numpy.load", "importlib.import_module", "importlib.__import__", "runpy.run_path", "runpy.run_module",
         "code.interact", "asyncio.create_subprocess_shell", "asyncio.create_subprocess_exec",
         "ctypes.CDLL", "ctypes.cdll.LoadLibrary", "ctypes.PyDLL", "importlib.util.spec_from_file_location"}
RISKY_PREFIXES = ("subprocess.", "os.exec", "os.spawn")
SQL_CALLS = {"execute", "executemany", "executescript"}  # flagged unless the SQL is a literal or a module constant
ALLOWED = {
    ("generator_core/validate.py", "LoadedProgram.__init__", "compile"):
        "compiles the program render.py wrote from a validated spec (registry names, enums, solved ints)",
    ("generator_core/validate.py", "LoadedProgram.__init__", "exec"):
        "executes that program; test_rendered_programs_hold_no_client_text checks what it can contain",
    ("generator_core/grading.py", "Replay.of", "compile"):
        "compiles the node expressions render.py wrote for that same program (Candidate.steps), never client text",
    ("generator_core/grading.py", "Replay.run", "eval"):
        "evaluates those expressions on the program's tensors, with only torch in scope",
    ("generator_core/grade.py", "_Child.__init__", "subprocess.Popen"):
        "a fixed argv list (sys.executable, the grade_worker.py path, a temporary folder), no shell; started "
        "by grade() (tcgen grade, the verl reward function), which no module of service/ but the command line (service/cli/) names "
        "(test_the_service_never_reaches_the_grader)",
    ("generator_core/grade_worker.py", "_load_module", "importlib.util.spec_from_file_location"):
        "the grader's child loads the sample's program and the candidate of grade()'s caller (tcgen grade, the "
        "verl reward function) in its own process, with a time and memory limit; never reached from the service",
    ("generator_core/__init__.py", "__getattr__", "importlib.import_module"):
        "imports one of the package's own submodules, from the constant _WHERE map, for a name in it",
    ("service/engine/workers.py", "_release_memory", "ctypes.CDLL"): "the constant 'libc.so.6', for malloc_trim",
    ("service/jobs/store.py", "JobStore._one", "sql"):
        "interpolates the _COLUMNS constant and the callers' fixed WHERE clauses; values bound as ?",
    ("service/jobs/store.py", "JobStore._many", "sql"): "the _COLUMNS constant and fixed clauses; values bound as ?",
    ("service/jobs/store.py", "JobStore.count_jobs", "sql"): "a fixed WHERE clause or none; the state bound as ?",
    ("service/jobs/store.py", "JobStore.add_result", "sql"):
        "the column name is 'completed' or 'failed' (a conditional on constants); the id bound as ?",
}


def _imports(tree: ast.Module) -> dict[str, str]:
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[(a.asname or a.name).split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, imports: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([imports.get(node.id, node.id), *reversed(parts)])


def risky_calls() -> dict[tuple[str, str, str], ast.Call]:
    """(file, enclosing function, what) of every risky call; `what` is "sql" for SQL built
    from anything but a literal. Fails outright on shell=True."""
    found = {}
    for path in sorted(p for d in ("service", "generator_core") for p in (ROOT / d).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), rel)
        imports = _imports(tree)
        constants = {t.id for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                     and isinstance(node.value.value, str) for t in node.targets if isinstance(t, ast.Name)}

        def visit(node: ast.AST, scope: list[str]) -> None:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                scope = [*scope, node.name]
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    literal_false = isinstance(kw.value, ast.Constant) and kw.value.value is False
                    assert kw.arg != "shell" or literal_false, f"{rel}:{node.lineno}: shell=True"
                name = _dotted(node.func, imports)
                what = None
                if name in RISKY or (name and name.startswith(RISKY_PREFIXES)):
                    what = name
                elif (isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS and node.args
                      and not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))
                      and not (isinstance(node.args[0], ast.Name) and node.args[0].id in constants)):
                    what = "sql"
                if what:
                    found[(rel, ".".join(scope), what)] = node
            for child in ast.iter_child_nodes(node):
                visit(child, scope)

        visit(tree, [])
    return found


def test_no_eval_exec_shell_or_unpickling_outside_the_allow_list():
    """AST scan of service/ and generator_core/: eval, exec, compile, process starts,
    native loads, unpickling and non-literal SQL appear exactly where ALLOWED says why
    (a stale entry fails too); no shell=True anywhere; the one native load has a literal
    library name."""
    found = risky_calls()
    assert set(found) == set(ALLOWED), {"unlisted": sorted(set(found) - set(ALLOWED)),
                                        "stale": sorted(set(ALLOWED) - set(found))}
    cdll = found[("service/engine/workers.py", "_release_memory", "ctypes.CDLL")]
    assert isinstance(cdll.args[0], ast.Constant)


def test_the_service_never_reaches_the_grader():
    """The grader runs candidate source (its caller's, in a child process); the REST
    service must not: no module of service/ but the command line names it."""
    grader = {"grade", "grade_worker", "verl", "GradingTask", "compute_score", "export_verl", "select_sample"}
    for path in sorted((ROOT / "service").rglob("*.py")):
        if path.parent.name == "cli":
            continue
        tree = ast.parse(path.read_text(), str(path))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {a.name.split(".")[-1] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                  for a in n.names}
        names |= {n.module.split(".")[-1] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & grader, (path, names & grader)


def test_sql_sees_client_text_only_as_bound_values(settled):
    """Client strings that reach SQL (job id, Idempotency-Key, state) are bound, not
    spliced: SQL-looking values are just unknown ids or opaque keys."""
    assert settled.get("/v1/jobs/' OR '1'='1").status_code == 404
    assert settled.get("/v1/jobs/x'; DROP TABLE jobs; --/samples").status_code == 404
    assert settled.get("/v1/jobs", params={"state": "queued' OR 1=1 --"}).status_code == 422
    key = "k' OR '1'='1"
    first = settled.post("/v1/jobs", json={"level": 0, **SMALL}, headers={"Idempotency-Key": key})
    again = settled.post("/v1/jobs", json={"level": 0, **SMALL}, headers={"Idempotency-Key": key})
    other = settled.post("/v1/jobs", json={"level": 0, **SMALL}, headers={"Idempotency-Key": "k"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert settled.get("/v1/jobs").json()["total"] >= 2


# Where a client's string can go. GenerationSpec: these fields only (a new one fails here).
CLIENT_STRING_FIELDS = {"ops": "registry", "exclude_ops": "registry", "op_sequence": "registry",
                        "dtype": "literal", "topology": "literal", "format": "literal"}
# HTTP parameters typed as free strings: never rendered, only looked up (bound SQL values).
FREE_STRING_PARAMS = {("path", "job_id"), ("header", "idempotency-key")}


def _admits_str(annotation) -> bool:
    if annotation is str:
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return any(isinstance(a, str) for a in typing.get_args(annotation))
    return any(_admits_str(a) for a in typing.get_args(annotation))


def test_client_string_fields_are_all_known():
    """Every spec field that takes a string is a registry-name list or a Literal (the
    request model adds none); every free-string HTTP parameter is a job id or the
    Idempotency-Key, and the query strings of GET /v1/samples are enums."""
    for model in (GenerationSpec, SampleRequest):
        strings = {n for n, f in model.model_fields.items() if _admits_str(f.annotation)}
        assert strings == set(CLIENT_STRING_FIELDS), model
    schema = create_app(Settings(device="cpu", max_total_bytes=2**24)).openapi()
    free = set()
    for ops in schema["paths"].values():
        for op in ops.values():
            for p in op.get("parameters", []):
                s = p["schema"]
                options = s.get("anyOf", [s])
                if any(o.get("type") == "string" and "enum" not in o and "const" not in o for o in options):
                    free.add((p["in"], p["name"]))
    assert free == FREE_STRING_PARAMS


MARKERS = ["__import__('os').system('id')", "Add; import os", "Add\nimport os", "$(id)", "`id`",
           "'; DROP TABLE jobs; --",
           "{x}", "%s", "torch.float32", "float32\n", "eval", "Add ", "add", "<script>", "../../etc/passwd",
           "\u0410dd", "kernelbench; rm -rf /"]
marker_st = st.one_of(st.sampled_from(MARKERS), st.text(min_size=1, max_size=20))


@settings(max_examples=200, deadline=None, database=None)
@given(field=st.sampled_from(sorted(CLIENT_STRING_FIELDS)), marker=marker_st,
       model=st.sampled_from([GenerationSpec, SampleRequest]))
def test_client_strings_outside_the_registry_and_enums_are_rejected(field, marker, model):
    """A string in any client string field is either a registry name or enum value, or
    a ValidationError naming that field."""
    literal = GenerationSpec.model_fields[field].annotation
    allowed = set(OPERATORS) if CLIENT_STRING_FIELDS[field] == "registry" else set(typing.get_args(literal))
    value = [marker] if CLIENT_STRING_FIELDS[field] == "registry" else marker
    body = {"op_sequence": ["Add"]} if field != "op_sequence" else {"level": 0}
    try:
        spec = model.model_validate({**body, field: value})
    except ValidationError as err:
        assert marker not in allowed
        assert {e["loc"][0] for e in err.errors()} == {field}
        return
    assert marker in allowed
    assert getattr(spec, field) == value


def test_markers_in_string_fields_get_422_over_http(client):
    """The same over HTTP: POST bodies and GET query strings with a marker are 422s naming
    the field, and nothing is generated."""
    marker = "__import__('os').system('touch /tmp/tcgen-pwned')"
    for field, kind in CLIENT_STRING_FIELDS.items():
        body = {"level": 0, **SMALL, field: [marker] if kind == "registry" else marker}
        for path in ("/v1/samples", "/v1/jobs"):
            r = client.post(path, json=body)
            assert r.status_code == 422 and f"body.{field}" in messages(r), (path, field, r.text)
    for param in ("dtype", "topology", "format"):
        r = client.get("/v1/samples", params={"level": 0, param: marker})
        assert r.status_code == 422 and f"query.{param}" in messages(r), (param, r.text)
    assert not Path("/tmp/tcgen-pwned").exists()


# What a rendered program may consist of: these statements and expressions, names of the
# two templates and tensor_<n>, attributes that exist on torch (or on tensors), keyword
# names and strings from the vocabulary of single-operator programs (an operator's own
# literal, such as GELUTanh's approximate='tanh'), and numbers.
NODES = (ast.Module, ast.Import, ast.alias, ast.FunctionDef, ast.ClassDef, ast.arguments, ast.arg, ast.Return,
         ast.Assign, ast.Expr, ast.Call, ast.Attribute, ast.Name, ast.Load, ast.Store, ast.keyword, ast.Constant,
         ast.List, ast.Tuple, ast.BinOp, ast.UnaryOp, ast.USub, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow,
         ast.IfExp)
TEMPLATE_NAMES = {"torch", "nn", "self", "super", "get_inputs", "get_init_inputs", "fused_operator", "Model",
                  "forward", "__init__", "device"}
TENSOR = re.compile(r"tensor_\d+(_shape)?")  # a tensor, or (KernelBench's format) a weight's shape argument


def program_words(code: str) -> dict[str, set]:
    """Checks the structure and returns the keyword names, for the vocabulary."""
    import torch

    tree = ast.parse(code)
    words: dict[str, set] = {"keywords": set(), "strings": set()}
    for node in ast.walk(tree):
        assert isinstance(node, NODES), ast.dump(node)
        if isinstance(node, ast.Import):
            assert [a.name for a in node.names] in (["torch"], ["torch.nn"]), ast.dump(node)
        elif isinstance(node, ast.Name):
            assert node.id in TEMPLATE_NAMES or TENSOR.fullmatch(node.id), node.id
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assert node.name in TEMPLATE_NAMES, node.name
            assert not node.decorator_list
            if isinstance(node, ast.ClassDef):
                assert [_dotted(b, {"nn": "torch.nn"}) for b in node.bases] == ["torch.nn.Module"] and not node.keywords
            else:
                assert all(TENSOR.fullmatch(a.arg) or a.arg == "self" for a in node.args.args), ast.dump(node.args)
        elif isinstance(node, ast.Constant) and type(node.value) is str:
            words["strings"].add(node.value)
        elif isinstance(node, ast.Constant):
            assert type(node.value) in (int, float, bool, type(None)), repr(node.value)
        elif isinstance(node, ast.keyword):
            assert node.arg is not None
            words["keywords"].add(node.arg)
        elif isinstance(node, ast.Attribute):
            chain = _dotted(node, {"nn": "torch.nn"})
            if chain and chain.startswith("torch."):
                obj = torch
                for part in chain.split(".")[1:]:
                    obj = getattr(obj, part)  # AttributeError: not a torch name
            elif not (chain or "").startswith(("self.", "super.")):
                assert hasattr(torch.Tensor, node.attr) or node.attr == "values", node.attr
    return words


@pytest.fixture(scope="module")
def vocabulary() -> dict[str, set[str]]:
    """Keyword names and strings of every operator's programs (a few indices, both layouts)."""
    words: dict[str, set[str]] = {"keywords": set(), "strings": set()}
    for name in OPERATORS:
        for index in range(3):
            spec = GenerationSpec(op_sequence=[name], min_flops=LO, max_flops=HI, validate=False,
                                  max_total_bytes=2**24, format=("fused_operator", "kernelbench")[index % 2])
            for kind, found in program_words(generate(spec, index).pytorch).items():
                words[kind] |= found
    every = words["keywords"] | words["strings"]
    assert words["keywords"] and all(w.isidentifier() and not w.startswith("_") for w in every), words
    assert not every & {"eval", "exec", "open", "system", "import", "os", "sys", "subprocess", "globals", "builtins"}
    return words


@settings(max_examples=100, deadline=None, database=None)
@given(level=st.integers(0, 4), ops=st.none() | st.lists(st.sampled_from(list(OPERATORS)), min_size=1, max_size=6),
       dtype=st.sampled_from(["float32", "float16", "bfloat16"]),
       fmt=st.sampled_from(["fused_operator", "kernelbench"]),
       topology=st.sampled_from(["dag", "chain"]), seed=st.integers(0, 2**63 - 1), index=st.integers(0, 2**20))
def test_rendered_programs_hold_no_client_text(vocabulary, level, ops, dtype, fmt, topology, seed, index):
    """Any valid spec: the program imports torch only, names only template names and
    tensor_<n>, reaches only real torch attributes, and uses keyword names and string
    literals from the operators' vocabulary: there is nowhere for client text to be."""
    spec = GenerationSpec(level=level, ops=ops, dtype=dtype, format=fmt, topology=topology, seed=seed,
                          min_flops=LO, max_flops=HI, max_total_bytes=2**24, validate=False)
    try:
        sample = generate(spec, index)
    except GenerationError:
        return
    words = program_words(sample.pytorch)
    assert words["keywords"] <= vocabulary["keywords"] and words["strings"] <= vocabulary["strings"]
