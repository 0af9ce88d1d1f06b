#!/usr/bin/python3
"""Prints the dependency graph of tide's C files and fails on a cycle.

    tools/depgraph.py BUILD_DIR [SRC_DIR]

Two graphs: includes (src/X.c or X.h including Y.h, one node per module X)
and link level (X.o uses a symbol Y.o defines, from `nm`). Each is printed as
"module: what it uses", then any cycle is printed and the exit code is 1.
"""

import re
import subprocess
import sys
from pathlib import Path


def module(path):
    return Path(path).stem


def include_graph(src):
    graph = {}
    for f in sorted(src.glob("*.[ch]")):
        deps = graph.setdefault(module(f), set())
        for m in re.finditer(r'^#include "([^"]+)\.h"', f.read_text(), re.M):
            if m.group(1) != module(f) and (src / (m.group(1) + ".h")).exists():
                deps.add(m.group(1))
    return graph


def link_graph(build):
    defined, used = {}, {}
    for obj in sorted(build.glob("*.o")):
        out = subprocess.run(["nm", "--defined-only", "-g", str(obj)], capture_output=True, text=True,
                             check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3:
                defined[parts[2]] = module(obj)
        out = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout
        used[module(obj)] = {line.split()[-1] for line in out.splitlines() if line.strip()}
    graph = {}
    for mod, syms in used.items():
        graph[mod] = {defined[s] for s in syms if s in defined and defined[s] != mod}
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def show(title, graph):
    print(f"== {title}")
    for mod in sorted(graph):
        print(f"  {mod}: {' '.join(sorted(graph[mod])) or '-'}")
    found = cycles(graph)
    for comp in found:
        print(f"  CYCLE: {' <-> '.join(comp)}")
    return found


def main():
    build = Path(sys.argv[1] if len(sys.argv) > 1 else "build")
    src = Path(sys.argv[2] if len(sys.argv) > 2 else "src")
    bad = show("includes (module: modules whose headers it includes)", include_graph(src))
    bad += show("link (object: objects whose symbols it uses)", link_graph(build))
    if bad:
        print(f"{len(bad)} dependency cycle(s)", file=sys.stderr)
        return 1
    print("no dependency cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
