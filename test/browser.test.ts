/**
 * The report in a real browser: headless Chromium (Debian's chromium found on PATH, or MIMETIC_CHROMIUM; driven by
 * playwright-core) loads index.html and a layer page of a fixture's report from a plain local file
 * server. Every image must load, and no request may go anywhere but that server. Screenshots go
 * to test-artifacts/ (git-ignored) for a human to look at.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { initBackend } from '../src/model/backend.js';
import { defaultProbe } from '../src/analysis/probe.js';
import { writeReport } from '../src/report/report.js';
import { chromiumPath, requiresChromium } from './helpers/requires.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const CHROMIUM = chromiumPath();

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.png': 'image/png', '.json': 'application/json', '.safetensors': 'application/octet-stream' };

/** A plain static file server for one folder on 127.0.0.1; records every path asked for. */
async function serve(dir: string): Promise<{ origin: string; served: { path: string; status: number }[]; close: () => Promise<void> }> {
  const served: { path: string; status: number }[] = [];
  const server = http.createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const file = path.join(dir, path.normalize(urlPath).replace(/^(\.\.[/\\])+/, ''));
    let status = 200;
    if (!file.startsWith(dir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      status = 404;
      res.writeHead(404).end('not found');
    } else {
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
      res.end(fs.readFileSync(file));
    }
    served.push({ path: urlPath, status });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { origin: `http://127.0.0.1:${port}`, served, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

test('report pages render in headless Chromium: every image loads, no request leaves the local server', { timeout: 120_000, ...requiresChromium() }, async () => {
  assert.ok(CHROMIUM, 'no chromium on PATH (and MIMETIC_CHROMIUM unset): install Debian\'s chromium package (apt-get install chromium) to run the browser test');
  await initBackend('wasm');
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'browser-'));
  const out = path.join(root, 'report');
  const ckpt = Checkpoint.open(path.join(FIXTURES, 'mamba2-tiny'));
  try {
    await writeReport(ckpt, { out, probe: defaultProbe(ckpt.config.configVocabSize, { seqLen: 48, batch: 2 }), backend: 'wasm', source: 'test/fixtures/mamba2-tiny' });
  } finally {
    ckpt.close();
  }
  const srv = await serve(out);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const requests: string[] = [];
    const failed: string[] = [];
    context.on('request', (r) => { requests.push(r.url()); });
    context.on('requestfailed', (r) => { failed.push(`${r.url()} (${r.failure()?.errorText})`); });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    fs.mkdirSync(ARTIFACTS, { recursive: true });

    const checkImages = async (name: string) => {
      // A string expression: this project compiles without the DOM library.
      const imgs = await page.evaluate<{ src: string | null; ok: boolean; w: number }[]>(
        "Array.from(document.images).map((i) => ({ src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth }))",
      );
      assert.ok(imgs.length > 0, `${name}: no images`);
      for (const i of imgs) assert.ok(i.ok, `${name}: image ${i.src} did not load`);
      return imgs;
    };

    const resp = await page.goto(`${srv.origin}/index.html`, { waitUntil: 'load' });
    assert.equal(resp?.status(), 200);
    assert.match(await page.title(), /Mimetic audit/);
    const indexImgs = await checkImages('index.html');
    assert.ok(indexImgs.some((i) => i.src === 'img/scores.png'));
    // Two layers → two thumbnails, two rows in the ranked table.
    assert.equal(await page.locator('a.thumb').count(), 2);
    await page.screenshot({ path: path.join(ARTIFACTS, 'report-index.png'), fullPage: true });

    // Follow the link from the index, as a reader would.
    await Promise.all([page.waitForURL(`${srv.origin}/layer-01.html`), page.locator('a.thumb[href="layer-01.html"]').click()]);
    await page.waitForLoadState('load');
    assert.match((await page.locator('h1').textContent()) ?? '', /Layer 1/);
    const layerImgs = await checkImages('layer-01.html');
    assert.ok(layerImgs.length >= 11, `layer page shows ${layerImgs.length} images`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'report-layer-01.png'), fullPage: true });

    assert.deepEqual(errors, []);
    assert.deepEqual(failed, []);
    assert.ok(requests.length >= layerImgs.length + indexImgs.length);
    for (const u of requests) assert.ok(u.startsWith(`${srv.origin}/`), `request left the local server: ${u}`);
    // Everything the pages asked for existed (a favicon probe is the browser's own).
    for (const s of srv.served) if (s.path !== '/favicon.ico') assert.equal(s.status, 200, `${s.path} → ${s.status}`);
  } finally {
    await browser.close();
    await srv.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
});
