"""Reading generated assembly: the innermost loop of a GEMM micro-kernel, its FMAs, and whether it
touches the stack (spills). Used by tests/test_gemm_assembly.py to check that the default
Matmul schedule's register tile survives LLVM on x86 (AT&T syntax, as LLVM prints it) and
aarch64 (GNU syntax)::

    asm = executable.mod.imports[0].inspect_source("asm")   # no need to link or run it
    loop = gemm_inner_loop(asm)                              # arch read from the text
    loop.fma_count, loop.accumulators, loop.stack_accesses

A loop is a backward branch: the instructions from a label down to a branch back to it. Only
loops LLVM laid out as one contiguous range are seen (what it does for a simple counted loop such
as the k loop); "innermost" means no other loop lies inside the range. Stack accesses are memory
operands based on the stack pointer (``%rsp`` / ``sp``), or on the frame pointer (``%rbp`` /
``x29``) in a function that sets one up, plus push / pop; a spill through another register
holding a stack address is not seen. Calls are listed apart.
"""
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

X86, AARCH64 = "x86", "aarch64"

_X86_FMA = re.compile(r"^v?f(n?)m(add|sub|addsub|subadd)(132|213|231)(p|s)([sdh])$")
_AARCH64_VECTOR_FMA = ("fmla", "fmls")
_AARCH64_SCALAR_FMA = ("fmadd", "fmsub", "fnmadd", "fnmsub")
_X86_REG_BITS = {"zmm": 512, "ymm": 256, "xmm": 128}
_ELEM_BITS = {"b": 8, "h": 16, "s": 32, "d": 64}
_LABEL = re.compile(r"^([A-Za-z_.$][\w.$]*):")
_FUNCTION_START = re.compile(r"^\s*\.type\s+\S+,\s*[@%]function")


@dataclass
class Instruction:
    line: int  # 1-based line in the assembly text
    mnemonic: str
    operands: List[str]
    text: str

    def __str__(self):
        return self.text


@dataclass
class Fma:
    """One fused multiply-add: its destination (the accumulator) and the width it works on."""

    instruction: Instruction
    dest: str  # "%zmm13", "v20"
    vector: bool  # packed (ps / .4s), not a scalar (ss / fmadd s0)
    vector_bits: int  # register width used (0 for a scalar)
    elem_bits: int
    lane_form: bool = False  # aarch64 "fmla v0.4s, v1.4s, v2.s[0]" (multiplier broadcast from a lane)

    @property
    def lanes(self) -> int:
        return self.vector_bits // self.elem_bits if self.vector else 1


@dataclass
class AsmLoop:
    arch: str
    function: str  # the symbol the loop lies in (e.g. ".L__tvm_parallel_lambda")
    label: str  # the label the backward branch goes to
    instructions: List[Instruction]  # label .. backward branch, inclusive
    frame_pointer: bool = False  # the function sets up %rbp / x29 as a frame pointer
    _fmas: Optional[List[Fma]] = field(default=None, repr=False)

    @property
    def fmas(self) -> List[Fma]:
        if self._fmas is None:
            self._fmas = [f for f in (_fma(i, self.arch) for i in self.instructions) if f is not None]
        return self._fmas

    @property
    def fma_count(self) -> int:
        return len(self.fmas)

    @property
    def vector_fmas(self) -> List[Fma]:
        return [f for f in self.fmas if f.vector]

    @property
    def scalar_fmas(self) -> List[Fma]:
        return [f for f in self.fmas if not f.vector]

    @property
    def accumulators(self) -> Dict[str, int]:
        """Destination register -> FMAs into it per iteration (the register tile, if all is well)."""
        return dict(Counter(f.dest for f in self.fmas))

    @property
    def stack_accesses(self) -> List[Instruction]:
        """Loads / stores to the stack inside the loop: spills and reloads, for a GEMM kernel."""
        return [i for i in self.instructions if _touches_stack(i, self.arch, self.frame_pointer)]

    @property
    def calls(self) -> List[Instruction]:
        names = ("call", "callq") if self.arch == X86 else ("bl", "blr")
        return [i for i in self.instructions if i.mnemonic in names]

    @property
    def text(self) -> str:
        return "\n".join(i.text for i in self.instructions)

    def summary(self) -> str:
        acc = self.accumulators
        return (f"{self.arch} loop {self.label} in {self.function}: {len(self.instructions)} instructions, "
                f"{self.fma_count} FMAs ({len(self.vector_fmas)} vector, {len(self.scalar_fmas)} scalar) into "
                f"{len(acc)} accumulators, {len(self.stack_accesses)} stack accesses, {len(self.calls)} calls")


def detect_arch(asm: str) -> str:
    """x86 (AT&T: ``%``-registers) or aarch64, from the instructions themselves."""
    if re.search(r"%(?:[re]?[abcd]x|[re]?[sd]i|[re]?[sb]p|r\d+|[xyz]mm\d+)\b", asm):
        return X86
    if re.search(r"\b(?:[xw](?:\d+|zr)|v\d+\.\d*[bhsd])\b", asm):
        return AARCH64
    raise ValueError("cannot tell the architecture of this assembly (expected x86 AT&T or aarch64)")


def _strip_comment(line: str, arch: str) -> str:
    # x86 AT&T comments start with '#'; on aarch64 '#' is an immediate and comments start with '//'
    cut = line.find("#" if arch == X86 else "//")
    return line if cut < 0 else line[:cut]


def _split_operands(text: str) -> List[str]:
    """Operands split at top-level commas (not inside (...), [...], {...})."""
    out, depth, current = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        out.append("".join(current).strip())
    return out


def _parse(asm: str, arch: str):
    """Yield ("function", name) / ("label", name) / ("instr", Instruction) events."""
    for number, raw in enumerate(asm.splitlines(), 1):
        if _FUNCTION_START.match(raw):
            yield "function", raw.split()[1].split(",")[0]
            continue
        line = _strip_comment(raw, arch).strip()
        if not line:
            continue
        match = _LABEL.match(line)
        if match:
            yield "label", match.group(1)
            line = line[match.end():].strip()
            if not line:
                continue
        if line.startswith("."):  # a directive
            continue
        parts = line.split(None, 1)
        instr = Instruction(number, parts[0].lower(), _split_operands(parts[1]) if len(parts) > 1 else [], line)
        yield "instr", instr


def _branch_target(instr: Instruction, arch: str) -> Optional[str]:
    """The label a direct branch goes to (None for anything else, calls and indirect jumps included)."""
    m = instr.mnemonic
    if arch == X86:
        if not m.startswith("j") or not instr.operands or instr.operands[-1].startswith("*"):
            return None
    elif not (m == "b" or m.startswith("b.") or m in ("cbz", "cbnz", "tbz", "tbnz")):
        return None
    return instr.operands[-1] if instr.operands else None


def _sets_frame_pointer(instr: Instruction, arch: str) -> bool:
    ops = [o.replace(" ", "") for o in instr.operands]
    if arch == X86:
        return instr.mnemonic in ("movq", "mov") and ops == ["%rsp", "%rbp"]
    return (instr.mnemonic == "mov" and ops == ["x29", "sp"]) or (
        instr.mnemonic == "add" and ops[:2] == ["x29", "sp"])


def _touches_stack(instr: Instruction, arch: str, frame_pointer: bool) -> bool:
    if arch == X86:
        if instr.mnemonic.startswith(("push", "pop")):
            return True
        bases = r"%rsp" + (r"|%rbp" if frame_pointer else "")
        return any(re.search(r"\((?:" + bases + r")\b", op) for op in instr.operands)
    bases = r"sp" + (r"|x29" if frame_pointer else "")
    return any(re.search(r"\[\s*(?:" + bases + r")\b", op) for op in instr.operands)


def _fma(instr: Instruction, arch: str) -> Optional[Fma]:
    m = instr.mnemonic
    if arch == X86:
        match = _X86_FMA.match(m)
        if not match or not instr.operands:
            return None
        packed, elem = match.group(4) == "p", _ELEM_BITS[match.group(5)]
        dest = instr.operands[-1].strip()  # AT&T: destination last
        bits = _X86_REG_BITS.get(dest.lstrip("%")[:3], 0)
        return Fma(instr, dest, packed, bits if packed else 0, elem)
    if m in _AARCH64_VECTOR_FMA and instr.operands:
        dest = instr.operands[0].strip()
        reg, _, arrangement = dest.partition(".")
        am = re.match(r"(\d+)([bhsd])$", arrangement)
        if am:  # "v20.4s"
            lanes, elem = int(am.group(1)), _ELEM_BITS[am.group(2)]
            return Fma(instr, reg, True, lanes * elem, elem, lane_form="[" in instr.operands[-1])
        # scalar-by-element form "fmla s0, s1, v2.s[1]"
        return Fma(instr, dest, False, 0, _ELEM_BITS.get(dest[:1], 32), lane_form=True)
    if m in _AARCH64_SCALAR_FMA and instr.operands:
        dest = instr.operands[0].strip()
        return Fma(instr, dest, False, 0, _ELEM_BITS.get(dest[:1], 32))
    return None


def find_loops(asm: str, arch: Optional[str] = None, innermost: bool = True) -> List[AsmLoop]:
    """Every backward branch as an AsmLoop (only those with no other loop inside, by default), in
    text order. Labels are resolved within one function (a joined text may repeat .LBB names)."""
    arch = arch or detect_arch(asm)
    instructions: List[Instruction] = []
    spans = []  # (start index, end index inclusive, label, function, frame pointer)
    labels: Dict[str, int] = {}
    function, frame, frames = "", False, {}
    for kind, value in _parse(asm, arch):
        if kind == "function":
            frames[function] = frame
            function, frame, labels = value, False, {}
        elif kind == "label":
            labels[value] = len(instructions)
            if not function and not value.startswith(".L"):
                function = value
        else:
            instructions.append(value)
            frame = frame or _sets_frame_pointer(value, arch)
            target = _branch_target(value, arch)
            if target is not None and target in labels:
                spans.append((labels[target], len(instructions) - 1, target, function))
    frames[function] = frame
    if innermost:
        spans = [s for s in spans
                 if not any(o is not s and s[0] <= o[0] and o[1] <= s[1] and (o[0], o[1]) != (s[0], s[1])
                            for o in spans)]
    return [AsmLoop(arch, fn, label, instructions[start:end + 1], frames.get(fn, False))
            for start, end, label, fn in spans]


def gemm_inner_loop(asm: str, arch: Optional[str] = None) -> AsmLoop:
    """The innermost loop doing the most FMAs: a GEMM kernel's k loop (ValueError if no loop has one)."""
    loops = [lp for lp in find_loops(asm, arch) if lp.fma_count]
    if not loops:
        raise ValueError("no loop with a fused multiply-add in this assembly (scalar mul+add only, or no loop)")
    return max(loops, key=lambda lp: lp.fma_count)


def register_tile_accumulators(traits, dtype_bits: int = 32) -> int:
    """Vector accumulators the default Matmul schedule keeps in registers: its mr x nr tile
    (``CPUTraits.matmul_tile``) in vectors of ``lanes``, i.e. mr * nr / lanes (AVX-512 and NEON:
    8 x 2 = 16, AVX2: 4 x 2 = 8). One k step issues one FMA per accumulator."""
    mr, nr = traits.matmul_tile(dtype_bits)
    lanes = traits.lanes(dtype_bits)
    return mr * (nr // lanes)
