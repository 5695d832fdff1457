/**
 * Outside text (file names, tensor names, server replies, JSON values from a file) made safe to
 * print: no control characters (a `\n` would forge a second `mimetic:` line, ESC and OSC sequences
 * would reach the terminal), and a short, non-recursive preview of any JSON value.
 */

// C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** `s` with every control character replaced by `?` (tabs and newlines too: a message is one line). */
export function printable(s: unknown): string {
  return String(s).replace(CONTROL, '?');
}

/**
 * A value from a file, shown in at most `max` characters without recursing: nested lists and
 * objects appear as `[…]` and `{…}`, so a list nested millions deep costs nothing to describe.
 */
export function preview(v: unknown, max = 60): string {
  const one = (x: unknown): string => {
    if (Array.isArray(x)) return x.length === 0 ? '[]' : '[…]';
    if (x !== null && typeof x === 'object') return '{…}';
    if (typeof x === 'string') return JSON.stringify(x.length > max ? x.slice(0, max) + '…' : x);
    return String(x);
  };
  let out: string;
  if (Array.isArray(v)) {
    const parts: string[] = [];
    let len = 1;
    for (const x of v) {
      const p = one(x);
      if (len + p.length > max) { parts.push(`… ${v.length - parts.length} more`); break; }
      parts.push(p);
      len += p.length + 1;
    }
    out = `[${parts.join(',')}]`;
  } else {
    out = one(v);
  }
  return printable(out.length > max + 20 ? out.slice(0, max) + '…' : out);
}
