"""A griffe extension that lets ferroptim's docstrings, written with a few reST habits,
render as Markdown in the API reference (loaded by mkdocstrings, see mkdocs.yml).

- ``text::`` and an indented block: the block becomes a fenced block. Python code stays
  code; a block of update formulas (``v = beta * v + (1 - beta) * g  # comment``) becomes
  display math, one line per formula, when every line can be read as one (else code).
- ``:class:`X```, ``:func:``, ``:meth:``, ``:attr:``, ``:mod:``: a cross-reference when
  the name resolves to a ferroptim object, else code.
- reST simple tables (``=====  =====`` rules) become Markdown tables.

Anything reST left over (a role it does not know) is logged as a warning, which fails
``mkdocs build --strict``.
"""

from __future__ import annotations

import ast
import logging
import re

import griffe

log = logging.getLogger("mkdocs.plugins.griffe_rst")

ROLE = re.compile(r":(class|func|meth|attr|mod|data|exc|obj):`~?([^`]+)`")
RULE = re.compile(r"^\s*=+(\s+=+)+\s*$")


# -- formulas -------------------------------------------------------------------------

GREEK = {
    "alpha": r"\alpha", "beta": r"\beta", "gamma": r"\gamma", "delta": r"\delta",
    "eps": r"\epsilon", "epsilon": r"\epsilon", "eta": r"\eta", "theta": r"\theta",
    "lambda_": r"\lambda", "mu": r"\mu", "nu": r"\nu", "rho": r"\rho", "sigma": r"\sigma",
    "tau": r"\tau", "phi": r"\phi", "inf": r"\infty",
}  # fmt: skip
FUNCS = {
    "sqrt",
    "abs",
    "maximum",
    "max",
    "min",
    "minimum",
    "sign",
    "floor",
    "exp",
    "log",
    "cos",
    "sin",
    "SUB",
}
PREC = {ast.Add: 1, ast.Sub: 1, ast.Mult: 2, ast.Div: 2, ast.Pow: 4}


class NotAFormula(Exception):
    pass


def _word(s: str) -> str:
    if s in GREEK:
        return GREEK[s]
    m = re.fullmatch(r"([a-z]+)(\d+)", s)
    if m and m.group(1) in GREEK:
        return f"{GREEK[m.group(1)]}_{{{m.group(2)}}}"
    if len(s) == 1 or s.isdigit():
        return s
    return r"\mathrm{" + s.replace("_", r"\_") + "}"


def _name(s: str) -> str:
    if "_" in s:
        base, sub = s.split("_", 1)
        simple = len(base) == 1 or base in GREEK
        if sub == "hat" and simple:
            return rf"\hat{{{_word(base)}}}"
        if simple or sub in ("max", "min", "inf", "t") or len(sub) == 1:
            return f"{_word(base)}_{{{_word(sub)}}}"
    return _word(s)


def _paren(node, parent_prec: int, right: bool = False) -> str:
    text = _tex(node)
    if isinstance(node, ast.BinOp):
        p = PREC[type(node.op)]
        if isinstance(node.op, ast.Div):
            return text  # a fraction needs no parentheses
        if p < parent_prec or (right and p == parent_prec and parent_prec == 1):
            return rf"\left({text}\right)"
    if isinstance(node, (ast.IfExp, ast.Compare)):
        return rf"\left({text}\right)"
    return text


def _number(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise NotAFormula
    s = repr(v)
    if "e" in s:
        mant, exp = s.split("e")
        return (f"{mant} \\cdot " if mant not in ("1", "1.0") else "") + f"10^{{{int(exp)}}}"
    return s


def _tex(node) -> str:
    if isinstance(node, ast.Name):
        return _name(node.id)
    if isinstance(node, ast.Constant):
        return _number(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return "-" + _paren(node.operand, 3)
    if isinstance(node, ast.BinOp) and type(node.op) in PREC:
        op = type(node.op)
        if op is ast.Div:
            left = node.left
            if (
                isinstance(left, ast.BinOp)
                and isinstance(left.op, ast.Mult)
                and isinstance(left.left, ast.BinOp)
                and isinstance(left.left.op, ast.Div)
            ):
                # (a / b) * c / d reads better as a/b times c/d than as one nested fraction
                return rf"{_tex(left.left)}\,\frac{{{_tex(left.right)}}}{{{_tex(node.right)}}}"
            return rf"\frac{{{_tex(left)}}}{{{_tex(node.right)}}}"
        if op is ast.Pow:
            base = _tex(node.left)
            if not isinstance(node.left, (ast.Name, ast.Constant)):
                base = rf"\left({base}\right)"
            return f"{{{base}}}^{{{_tex(node.right)}}}"
        left, right = _paren(node.left, PREC[op]), _paren(node.right, PREC[op], right=True)
        if op is ast.Mult:
            dot = r" \cdot " if isinstance(node.right, ast.Constant) else r"\,"
            return left + dot + right
        return f"{left} {'+' if op is ast.Add else '-'} {right}"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCS:
        if node.keywords:
            raise NotAFormula
        args = [_tex(a) for a in node.args]
        f = node.func.id
        if f == "SUB" and len(args) == 2:
            return f"{{{args[0]}}}_{{{args[1]}}}"
        if len(args) == 1:
            a = args[0]
            if f == "sqrt":
                return rf"\sqrt{{{a}}}"
            if f == "abs":
                return rf"\lvert {a} \rvert"
            if f == "floor":
                return rf"\lfloor {a} \rfloor"
            if f == "sign":
                return rf"\operatorname{{sign}}\left({a}\right)"
            if f in ("exp", "log", "cos", "sin"):
                return rf"\{f}\left({a}\right)"
        if f in ("maximum", "max", "minimum", "min") and len(args) >= 2:
            return rf"\{f[:3]}\left({', '.join(args)}\right)"
        raise NotAFormula
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        ops = {ast.Gt: ">", ast.Lt: "<", ast.GtE: r"\ge", ast.LtE: r"\le", ast.NotEq: r"\ne", ast.Eq: "="}
        if type(node.ops[0]) in ops:
            return f"{_tex(node.left)} {ops[type(node.ops[0])]} {_tex(node.comparators[0])}"
    if isinstance(node, ast.IfExp):
        return rf"{_tex(node.body)} \;\text{{ if }} {_cond(node.test)} \text{{, else }} {_tex(node.orelse)}"
    raise NotAFormula


def _cond(node) -> str:
    if isinstance(node, ast.Name):
        return r"\text{" + node.id + "}"
    return _tex(node)


def _statement(node) -> str:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        value = node.value
        if isinstance(value, ast.IfExp) and not isinstance(value.orelse, ast.expr):
            raise NotAFormula
        return rf"{_tex(node.targets[0])} \leftarrow {_tex(value)}"
    if isinstance(node, ast.AugAssign) and type(node.op) in PREC:
        op = ast.BinOp(left=node.target, op=node.op, right=node.value)
        return rf"{_tex(node.target)} \leftarrow {_tex(op)}"
    if isinstance(node, ast.Expr):
        return _tex(node.value)
    raise NotAFormula


def _text(s: str) -> str:
    """Comment text for ``\\text{}``: latex2mathml keeps its characters literally."""
    s = s.replace("\\", " ").replace("{", "(").replace("}", ")").replace("$", "")
    for a, b in (("!=", "≠"), (">=", "≥"), ("<=", "≤"), ("**", "^"), ("&", "and")):
        s = s.replace(a, b)
    return s


def formula_line(line: str) -> str:
    """One line of pseudo-code as LaTeX, e.g. ``v = beta * v + (1 - beta) * g``."""
    code, _, comment = line.partition("#")
    code = re.sub(r"\|([^|]+)\|", r"abs(\1)", code)
    code = re.sub(r"\b([A-Za-z]\w*)_\{([^{}]*)\}", r"SUB(\1, \2)", code)
    try:
        tree = ast.parse(code.strip())
    except SyntaxError:
        raise NotAFormula from None
    if not tree.body:
        raise NotAFormula
    tex = r",\quad ".join(_statement(s) for s in tree.body)
    if comment.strip():
        tex += rf"\qquad \text{{{_text(comment.strip())}}}"
    return tex


def formula_block(lines: list[str]) -> str | None:
    """Display math for a block of formula lines, or None if a line is not a formula."""
    try:
        rows = [formula_line(l) for l in lines if l.strip()]
    except NotAFormula:
        return None
    return "\n\n".join(f"$$\n{r}\n$$" for r in rows)


# -- blocks, roles and tables ---------------------------------------------------------


def _is_code(lines: list[str]) -> bool:
    text = "\n".join(l.split("#")[0] for l in lines)
    return bool(re.search(r"\bimport\b|^\s*for\b.*:\s*$|^\s*with\b.*:\s*$|>>>|\bfo\.|\bopt\.", text, re.M))


def _dedent(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    indent = min(len(l) - len(l.lstrip()) for l in lines if l.strip())
    return [l[indent:] for l in lines]


def literal_blocks(text: str) -> str:
    """``paragraph::`` + blank line + indented block -> ``paragraph:`` + a fenced block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip():
            base = len(line) - len(line.lstrip())
            j = i + 1
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
                j -= 1
            if not block:
                out.append(line)
                i += 1
                continue
            head = line.rstrip()[:-2].rstrip()
            if head.strip():
                out.append(head + ":")
            out.append("")
            body = _dedent(block)
            pad = " " * base
            math = None if _is_code(body) else formula_block(body)
            if math is not None:
                out += [pad + l if l else "" for l in math.split("\n")]
            else:
                lang = "python" if _is_code(body) else "text"
                out += [pad + "```" + lang] + [pad + l if l.strip() else "" for l in body] + [pad + "```"]
            i = j
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _cells(row: str, spans: list[tuple[int, int]]) -> list[str]:
    """The cells of a table row, cut where the rule's columns start."""
    return [
        row[a : (spans[k + 1][0] if k + 1 < len(spans) else len(row))].strip()
        for k, (a, _) in enumerate(spans)
    ]


def simple_tables(text: str) -> str:
    """reST simple tables (a rule, the header, a rule, rows, a rule) -> Markdown tables."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if RULE.match(lines[i]):
            rules = [k for k in range(i, len(lines)) if RULE.match(lines[k])][:3]
            if len(rules) == 3 and all(lines[r].strip() == lines[i].strip() for r in rules):
                rule = lines[i]
                spans = [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]
                pad = rule[: len(rule) - len(rule.lstrip())]

                header = [
                    " ".join(c) for c in zip(*[_cells(l, spans) for l in lines[rules[0] + 1 : rules[1]]])
                ]
                rows: list[list[str]] = []
                for l in lines[rules[1] + 1 : rules[2]]:
                    c = _cells(l, spans)
                    # a continuation line: the first cell is empty, or a cell of the row
                    # before left a ``literal`` open
                    if rows and (not c[0] or any(cell.count("``") % 2 for cell in rows[-1])):
                        rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], c)]
                    elif l.strip():
                        rows.append(c)
                out.append(pad + "| " + " | ".join(header) + " |")
                out.append(pad + "|" + "---|" * len(header))
                out += [pad + "| " + " | ".join(r) + " |" for r in rows]
                i = rules[2] + 1
                continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def roles(text: str, obj) -> str:
    def link(m: re.Match) -> str:
        kind, target = m.group(1), m.group(2)
        shown = target.split(".")[-1] if not target.startswith(".") else target.lstrip(".")
        if kind != "mod" and not target.startswith("."):
            for scope in (obj, obj.parent, obj.module):
                if scope is None:
                    continue
                try:
                    path = scope.resolve(target.split(".")[0])
                except Exception:
                    continue
                path = path + target[len(target.split(".")[0]) :]
                if path.startswith("ferroptim.") and ".demo" not in path and "._" not in path:
                    return f"[`{shown}`][{path}]"
        return f"`{target}`"

    text = ROLE.sub(link, text)
    left = re.search(r":[a-z]+:`", text)
    if left:
        log.warning("%s: docstring keeps a reST role: %r", obj.path, text[left.start() : left.start() + 40])
    return text


ARG = re.compile(r"^(\s+)(\w+(?:, \w+)+): (.*)$")


def shared_args(text: str) -> str:
    """``a, b: what they are`` in an Args section -> one entry per name (Google style has
    one name per entry, and griffe checks each against the signature)."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = ARG.match(lines[i])
        if m:
            indent = len(m.group(1))
            j = i + 1
            while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) > indent:
                j += 1
            for name in m.group(2).split(", "):
                out.append(f"{m.group(1)}{name}: {m.group(3)}")
                out += lines[i + 1 : j]
            i = j
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out)


def convert(text: str, obj) -> str:
    # "Example:" is a plain admonition in Google style; "Examples:" parses doctests as code.
    text = re.sub(r"^(\s*)Example:[ \t]*$", r"\1Examples:", text, flags=re.M)
    return roles(simple_tables(literal_blocks(shared_args(text))), obj)


def readable_default(value):
    """A dataclass field's ``field(default_factory=lambda: EXPR)`` as ``EXPR`` and
    ``field(default_factory=F)`` as ``F()``: the value each instance starts with (griffe
    would show the call ``(lambda: EXPR)()`` as the default); any other value as it is. Fields with more arguments than the factory are left alone."""
    if not isinstance(value, griffe.ExprCall) or str(value.function).rsplit(".", 1)[-1] != "field":
        return value
    args = value.arguments
    if len(args) != 1 or not isinstance(args[0], griffe.ExprKeyword) or args[0].name != "default_factory":
        return value
    factory = args[0].value
    if isinstance(factory, griffe.ExprLambda):
        return factory.body if not factory.parameters else value
    return griffe.ExprCall(function=factory, arguments=[])  # field(default_factory=dict): dict()


class ReSTToMarkdown(griffe.Extension):
    def on_instance(self, *, obj, **kwargs) -> None:
        if not obj.path.startswith("ferroptim"):
            return
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value, obj)
        if obj.is_attribute and obj.value is not None:
            obj.value = readable_default(obj.value)
