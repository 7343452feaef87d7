#!/usr/bin/env python3
"""The man pages the build makes from --help (dist/CMakeLists.txt, tools/man/help2roff.py).

For roam-server, roam-client and roamctl:
  * groff renders the page with every warning on (-ww) and says nothing;
  * `man -l` renders it (exit 0) with NAME, SYNOPSIS and OPTIONS;
  * every option --help names appears in the rendered page, and every option --help lists
    as an entry (a line "  --option ...") is a tagged paragraph of its own in the page.

$MAN_DIR is the build's man directory, $ROAM_SERVER/$ROAM_CLIENT/$ROAMCTL the programs
(set by CTest). groff and man come from tools/setup (groff-base, man-db): missing, the
test fails; it never skips. Takes about a second.
"""
import os
import re
import shutil
import subprocess
import sys

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(SOURCE, "build")
MAN_DIR = os.environ.get("MAN_DIR") or os.path.join(BUILD, "man")
PROGRAMS = {name: os.environ.get(var) or os.path.join(BUILD, "apps", name)
            for name, var in (("roam-server", "ROAM_SERVER"), ("roam-client", "ROAM_CLIENT"),
                              ("roamctl", "ROAMCTL"))}
# An option: - or -- and a letter, not inside a word ("roam-server", "1-600").
OPTION = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*|-[A-Za-z])(?![\w-])")
ENTRY = re.compile(r"^  (-{1,2}[A-Za-z][\w-]*)")


def fail(message):
    print("FAIL man_pages_test.py: " + message)
    sys.exit(1)


def run(argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def plain(text):
    """groff's UTF-8 hyphen and minus back to ASCII, so options read as typed."""
    return text.replace("\u2010", "-").replace("\u2212", "-")


def roff_terms(page_text):
    """The first word of every tagged paragraph's term (.TP, then the term line), unescaped."""
    lines = page_text.split("\n")
    terms = set()
    for i, line in enumerate(lines[:-1]):
        if line == ".TP":
            term = re.sub(r"\\f[BIR]", "", lines[i + 1]).replace("\\-", "-")
            terms.add(term.split(" ")[0].rstrip(","))
            terms.update(word.rstrip(",") for word in term.split(" ") if word.startswith("-"))
    return terms


def main():
    for tool in ("groff", "man"):
        if shutil.which(tool) is None:
            fail("%s is missing (tools/setup installs groff-base and man-db)" % tool)
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80", LC_ALL="C.UTF-8", ASAN_OPTIONS="detect_leaks=0")
    for name, program in PROGRAMS.items():
        page = os.path.join(MAN_DIR, name + ".1")
        if not os.path.isfile(page):
            fail("no man page %s (the build makes it: target man_pages)" % page)
        with open(page) as f:
            source = f.read()
        result = run(["groff", "-man", "-Tutf8", "-ww", "-z", page], env)
        if result.returncode != 0 or result.stderr.strip():
            fail("groff -ww %s: exit %d\n%s" % (page, result.returncode, result.stderr))
        result = run(["man", "-l", page], env)
        if result.returncode != 0 or result.stderr.strip():
            fail("man -l %s: exit %d\n%s" % (page, result.returncode, result.stderr))
        for section in ("NAME", "SYNOPSIS", "OPTIONS"):
            if "\n" + section + "\n" not in result.stdout:
                fail("man -l %s: no %s section" % (page, section))
        # Wide lines and no hyphenation, so that no option is broken across lines.
        result = run(["groff", "-man", "-Tutf8", "-rLL=300n", "-rHY=0", "-P-cbou", page], env)
        rendered = plain(result.stdout)
        words = set(OPTION.findall(rendered))
        help_text = run([program, "--help"], env).stdout
        if not help_text.startswith("Usage: " + name):
            fail("%s --help printed %r" % (program, help_text[:100]))
        options = sorted(set(OPTION.findall(help_text)))
        missing = [o for o in options if o not in words]
        if missing:
            fail("%s: options of --help missing from the page: %s" % (name, missing))
        entries = sorted({m.group(1) for m in map(ENTRY.match, help_text.split("\n")) if m})
        terms = roff_terms(source)
        untagged = [o for o in entries if o not in terms]
        if untagged:
            fail("%s: options with an entry in --help but no tagged paragraph: %s" % (name, untagged))
        print("%s: %d options, %d entries, all in %s" % (name, len(options), len(entries), page))
    print("PASS")


if __name__ == "__main__":
    main()
