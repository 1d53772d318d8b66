"""Bad compose input fails loudly and precisely (issue 18.5): the file, the line, the reason; the rest
of the file is still audited; alias bombs, hostile tags, templates and huge files are refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from stackaudit.config import Settings
from stackaudit.facts import CollectContext, Facts, SourceUnavailable
from stackaudit.facts import compose as compose_source
from stackaudit.facts.compose import MAX_EXPANDED_NODES, ProjectSpec, load_project


def project(tmp_path: Path, text: str, name: str = "p") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "compose.yml").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def collect(directory: Path) -> tuple[dict[str, Any] | None, CollectContext]:
    ctx = CollectContext(settings=Settings(project_dirs=(directory,)), facts=Facts(), source="compose")
    try:
        return compose_source.collect(ctx), ctx
    except SourceUnavailable as exc:
        ctx.error("compose", str(exc))
        return None, ctx


def invalid(ctx: CollectContext) -> list[tuple[str, str]]:
    return [(e.where, e.why) for e in ctx.facts.errors if e.invalid]


def bomb(levels: int = 9) -> str:
    lines = ['x-a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"x-a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    service = f"services:\n  web:\n    image: nginx\n    labels:\n      bomb: *a{levels - 1}\n"
    return "\n".join(lines) + "\n" + service


def test_malformed_yaml_names_file_and_line_and_the_source_is_unavailable(tmp_path: Path) -> None:
    directory = project(tmp_path, "services:\n  web:\n    image: nginx\n   ports: ['80:80']\n")
    data, ctx = collect(directory)
    assert data is None
    assert invalid(ctx) == [(f"{directory}/compose.yml:4",
                             "malformed YAML: expected <block end>, but found '<block mapping start>'")]


def test_a_template_is_named_as_one(tmp_path: Path) -> None:
    directory = project(tmp_path, "# {{ not this comment }}\nservices:\n  web:\n"
                                  "    image: {{ .Values.image }}\n")
    _data, ctx = collect(directory)
    assert invalid(ctx) == [(f"{directory}/compose.yml:4", "a template (Jinja/Helm `{{ }}` or `{% %}`), "
                             "not a compose file: render it first and audit the result")]


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    directory = project(tmp_path, f"""\
        services:
          web:
            image: nginx
            labels:
              x: !!python/object/apply:os.system ["touch {marker}"]
        """)
    for use_binary in (False, True):
        errors: list[tuple[str, str]] = []
        assert load_project(ProjectSpec(directory), lambda w, y, sink=errors: sink.append((w, y)),
                            use_binary=use_binary) is None
        assert errors == [(f"{directory}/compose.yml:5", "YAML tag !!python/object/apply:os.system is not "
                           "allowed in a compose file (only !reset and !override are): refused")]
    assert not marker.exists()


def test_reset_and_override_tags_are_still_read(tmp_path: Path) -> None:
    directory = project(tmp_path, "services:\n  web:\n    image: nginx\n    ports: !reset []\n"
                                  "    command: !override [a]\n")
    data, ctx = collect(directory)
    assert data is not None and invalid(ctx) == []


def test_a_recursive_alias_does_not_hang(tmp_path: Path) -> None:
    directory = project(tmp_path, "x-loop: &loop\n  - *loop\nservices:\n  web:\n    image: nginx\n")
    data, ctx = collect(directory)  # ruamel resolves the self-reference to null
    assert data is not None and invalid(ctx) == []


def test_quoted_go_templates_in_labels_are_plain_strings(tmp_path: Path) -> None:
    directory = project(tmp_path, "services:\n  web:\n    image: nginx\n    labels:\n"
                                  "      traefik.rule: \"Host(`{{ .Name }}.example.com`)\"\n")
    data, ctx = collect(directory)
    assert data is not None and invalid(ctx) == []


def test_a_huge_file_is_not_read(tmp_path: Path) -> None:
    directory = project(tmp_path, "services:\n  web:\n    image: nginx\n" + "# padding\n" * 500_000)
    _data, ctx = collect(directory)
    assert invalid(ctx) == [(f"{directory}/compose.yml",
                             "compose file is 4.8 MiB, more than the 4 MiB limit: not read")]


def test_an_alias_bomb_is_refused_within_memory_and_time_bounds(tmp_path: Path) -> None:
    """Nine levels of nine (387 million values once expanded) referenced by a service: refused from
    the node count, under a 1 GiB address-space limit and a generous 60 s timeout (not a speed test)."""
    directory = project(tmp_path, bomb())
    script = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from pathlib import Path
        from stackaudit.facts.compose import ProjectSpec, load_project
        errors = []
        loaded = load_project(ProjectSpec(Path({str(directory)!r})), lambda w, y: errors.append((w, y)))
        print(loaded is None, errors)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    # the first anchor past the bound: a5, 9^6 values
    assert result.stdout.strip() == str((True, [(f"{directory}/compose.yml:6",
        f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb?): refused, as "
        "docker compose refuses it")])).replace("(True, ", "True ").removesuffix(")")


def test_anchors_that_expand_modestly_are_fine(tmp_path: Path) -> None:
    directory = project(tmp_path, bomb(levels=4))  # 9^4 = 6561 values: a big but honest file
    data, ctx = collect(directory)
    assert data is not None and invalid(ctx) == []


def test_ports_as_a_number_keeps_the_service_and_says_so(tmp_path: Path) -> None:
    directory = project(tmp_path, """\
        services:
          db:
            image: postgres:16
            ports: 5432
            mem_limit: 1g
          web:
            image: nginx
        """)
    data, ctx = collect(directory)
    assert data is not None
    db = data["projects"][0]["services"]["db"]
    assert db["mem_limit_bytes"] == 2**30 and db["product"] == "postgres"
    assert db["ports"] == [{"host_ip": None, "published": None, "target": 5432, "protocol": "tcp"}]
    assert "web" in data["projects"][0]["services"]
    assert invalid(ctx) == [(f"{directory}/compose.yml:4",
                             "service 'db': `ports` must be a list, not the number 5432: read as [5432]")]
    assert not any("not iterable" in e.why for e in ctx.facts.errors)


def test_every_odd_port_syntax(tmp_path: Path) -> None:
    directory = project(tmp_path, """\
        services:
          redis:
            image: redis:7
            ports:
              - 6381
              - "8000-8002:8000-8002"
              - "[::1]:6380:6379"
              - "127.0.0.1::6379"
              - "6382:6379/udp"
              - "${STACKAUDIT_TEST_UNSET_PORT:-6384}:6379"
              - target: 6379
                published: "6385"
                host_ip: 0.0.0.0
              - "abc:6379"
              - "8000-8010:8000-8005"
              - "6383:6379/quic"
              - true
              - "99999:6379"
        """)
    data, ctx = collect(directory)
    assert data is not None
    ports = [(p["host_ip"], p["published"], p["target"], p["protocol"])
             for p in data["projects"][0]["services"]["redis"]["ports"]]
    assert ports == [
        (None, None, 6381, "tcp"),
        (None, "8000", 8000, "tcp"), (None, "8001", 8001, "tcp"), (None, "8002", 8002, "tcp"),
        ("::1", "6380", 6379, "tcp"), ("127.0.0.1", None, 6379, "tcp"), (None, "6382", 6379, "udp"),
        (None, "6384", 6379, "tcp"), ("0.0.0.0", "6385", 6379, "tcp"),
    ]
    assert invalid(ctx) == [
        (f"{directory}/compose.yml:14", "service 'redis': port 'abc:6379': published port 'abc' is not a "
                                        "port number (1-65535) (ignored)"),
        (f"{directory}/compose.yml:15", "service 'redis': port '8000-8010:8000-8005': the published range "
                                        "has 11 ports, the container range 6 (ignored)"),
        (f"{directory}/compose.yml:16", "service 'redis': port '6383:6379/quic': unknown protocol 'quic' "
                                        "(tcp, udp or sctp) (ignored)"),
        (f"{directory}/compose.yml:17", "service 'redis': port True: a port is a string like "
                                        "\"127.0.0.1:5432:5432\" or a mapping, not a boolean (ignored)"),
        (f"{directory}/compose.yml:18", "service 'redis': port '99999:6379': published port '99999' is not a "
                                        "port number (1-65535) (ignored)"),
    ]


def test_a_service_that_is_not_a_mapping(tmp_path: Path) -> None:
    directory = project(tmp_path, "services:\n  web: nginx\n  db:\n    image: postgres:16\n")
    data, ctx = collect(directory)
    assert data is not None and list(data["projects"][0]["services"]) == ["db"]
    assert invalid(ctx) == [(f"{directory}/compose.yml:2", "service 'web' must be a mapping (ignored)")]


@pytest.mark.parametrize(("text", "why"), [
    ("- a\n- list\n", "a compose file must be a mapping at the top level, not a list"),
    ("just words\n", "a compose file must be a mapping at the top level, not a string"),
])
def test_a_file_that_is_not_a_mapping(tmp_path: Path, text: str, why: str) -> None:
    directory = project(tmp_path, text)
    _data, ctx = collect(directory)
    assert invalid(ctx) == [(f"{directory}/compose.yml", why)]


def test_deep_nesting_is_refused_plainly(tmp_path: Path) -> None:
    # 1,000 levels are past the parser's recursion limit; ruamel's own cost grows fast beyond
    deep = project(tmp_path, "services:\n  web:\n    image: nginx\n    labels:\n      x: " + "[" * 1000
                   + "]" * 1000 + "\n", name="deep")
    _data, ctx = collect(deep)
    assert invalid(ctx) == [(f"{deep}/compose.yml", "YAML nested more than 100 levels deep: refused")]
    nested = project(tmp_path, "services:\n  web:\n    image: nginx\n    labels:\n      x: " + "[" * 150
                     + "]" * 150 + "\n", name="nested")
    _data, ctx = collect(nested)
    assert invalid(ctx) == [(f"{nested}/compose.yml:5", "YAML nested more than 100 levels deep: refused")]


def test_binary_content_is_named(tmp_path: Path) -> None:
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "compose.yml").write_bytes(b"services:\n  web:\n    image: \xff\xfe\n")
    _data, ctx = collect(directory)
    assert invalid(ctx) == [(f"{directory}/compose.yml", "not UTF-8 text (byte 0xff at offset 28): not a "
                                                         "compose file")]
