from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_shows_the_commands_ci_runs():
    commands = dict(
        line.split(": ", 1) for line in (ROOT / ".ci/commands").read_text().splitlines() if not line.startswith("#")
    )
    readme = (ROOT / "README.md").read_text()
    assert commands["RUN_COMMAND"] in readme
    assert commands["TEST_COMMAND"] in readme
    assert "TEST_COMMAND" in (ROOT / ".ci/run").read_text()
