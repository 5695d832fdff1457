/** Escaping for everything that reaches HTML or SVG from a checkpoint (names, config values). */
const MAP: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => MAP[c]!);
}

/** XML text and attributes: the same escapes, and control characters (invalid in XML 1.0) dropped. */
export function escapeXml(s: unknown): string {
  // eslint-disable-next-line no-control-regex
  return escapeHtml(String(s).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, ''));
}
