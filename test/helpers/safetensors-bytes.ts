/**
 * Hand-made safetensors bytes for tests, built without the project's writer: an 8-byte little-endian
 * header length, the header text, then the data. Lets a test state exactly what is on disk.
 */
import * as fs from 'node:fs';

export function safetensorsBytes(header: string | Record<string, unknown>, data: Uint8Array = new Uint8Array(0), lengthOverride?: bigint): Buffer {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(text.byteLength));
  return Buffer.concat([len, text, data]);
}

export function writeRawSafetensors(file: string, header: string | Record<string, unknown>, data?: Uint8Array, lengthOverride?: bigint): string {
  fs.writeFileSync(file, safetensorsBytes(header, data, lengthOverride));
  return file;
}

/** A fixture-like file's parts: its header length, parsed header and data section. */
export function splitSafetensors(bytes: Uint8Array): { headerLength: number; header: Record<string, unknown>; data: Uint8Array } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(buf.readBigUInt64LE(0));
  return { headerLength: n, header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>, data: buf.subarray(8 + n) };
}
