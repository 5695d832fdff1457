/**
 * A stand-in for the Hugging Face Hub on 127.0.0.1, for testing `mimetic pull` without network.
 * It serves the endpoints the client calls, the way huggingface.co answers them:
 *
 *   GET /api/models/{org}/{name}/revision/{rev}   model info with `sha`
 *   GET /api/models/{org}/{name}/tree/{rev}       file listing (oid, size, lfs{oid,size}), paginated with Link
 *   GET /{org}/{name}/resolve/{rev}/{file}        small files: 200 + ETag (git blob sha1) + X-Repo-Commit;
 *                                                 LFS files: 302 to a second "CDN" server (another origin)
 *                                                 with X-Linked-ETag (sha256), X-Linked-Size, X-Repo-Commit
 *   GET {cdn}/blobs/{sha256}                      the bytes, with Range/206/416
 *
 * Faults can be injected per file (drop the connection once, corrupt bytes, stall, answer an
 * error status), and every request is recorded so tests can check what was and was not asked.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';

export interface RecordedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface FakeRepo {
  /** revision name → files (name → bytes). `main` should be present. */
  revisions: Record<string, Record<string, Buffer>>;
  /** Needs `Authorization: Bearer <hub token>`. */
  private?: boolean;
}

export interface Faults {
  /**
   * Send this many bytes of the file, then drop the connection, the first time it is asked for.
   * `before` runs between the two (e.g. to wait until the client has stored the bytes).
   */
  dropOnce?: { file: string; at: number; before?: () => Promise<void> };
  /** Serve the file with one byte flipped (same length). */
  corrupt?: { file: string };
  /** Send this many bytes, then hang with the connection open (until the client goes away). */
  stall?: { file: string; at: number };
  /**
   * Answer requests for this file on the resolve endpoint with this status and an error body that echoes
   * the request's Authorization header (a hostile server); `body`, when given, is sent as it is instead.
   */
  status?: { file: string; code: number; body?: string };
}

export interface FakeHubOptions {
  repos: Record<string, FakeRepo>;
  /** The one valid token. */
  token?: string;
  /** Entries per page of the tree listing. */
  pageSize?: number;
}

export function gitBlobSha1(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export function isLfs(name: string): boolean {
  return /\.(safetensors|bin)$/.test(name);
}

export function commitOf(repo: string, revision: string): string {
  return createHash('sha1').update(`commit ${repo}@${revision}`).digest('hex');
}

function lfsPointer(data: Buffer): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(data)}\nsize ${data.length}\n`);
}

export class FakeHub {
  readonly requests: RecordedRequest[] = [];
  faults: Faults = {};
  /** Called when a stalled transfer has sent its bytes. */
  onStall: (() => void) | null = null;
  private dropped = new Set<string>();
  private blobs = new Map<string, { name: string; data: Buffer }>();
  private openSockets = new Set<import('node:net').Socket>();

  private constructor(private readonly hub: http.Server, private readonly cdn: http.Server, readonly opts: FakeHubOptions) {
    for (const repo of Object.values(opts.repos)) {
      for (const files of Object.values(repo.revisions)) {
        for (const [name, data] of Object.entries(files)) if (isLfs(name)) this.blobs.set(sha256(data), { name, data });
      }
    }
  }

  static async start(opts: FakeHubOptions): Promise<FakeHub> {
    let self: FakeHub | null = null;
    const hub = http.createServer((req, res) => self!.handleHub(req, res));
    const cdn = http.createServer((req, res) => self!.handleCdn(req, res));
    self = new FakeHub(hub, cdn, opts);
    for (const s of [hub, cdn]) {
      s.on('connection', (sock) => {
        self!.openSockets.add(sock);
        sock.on('close', () => self!.openSockets.delete(sock));
      });
      await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    }
    return self;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.hub.address() as AddressInfo).port}`;
  }

  get cdnUrl(): string {
    return `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
  }

  /** Every request for a file by name (resolve or CDN), from request number `since` on. */
  fileRequests(name: string, since = 0): RecordedRequest[] {
    return this.requests.slice(since).filter((r) => {
      if (r.server === 'hub') return decodeURIComponent(r.url.split('?')[0]!).endsWith(`/${name}`) && r.url.includes('/resolve/');
      const sha = r.url.split('?')[0]!.split('/').pop()!;
      return this.blobs.get(sha)?.name === name;
    });
  }

  async close(): Promise<void> {
    for (const s of this.openSockets) s.destroy();
    await Promise.all([this.hub, this.cdn].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }

  private record(server: 'hub' | 'cdn', req: http.IncomingMessage): void {
    this.requests.push({ server, method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
  }

  private json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  /** Auth as the Hub does it: a bad token is always refused; a private repo needs the good one. */
  private authorised(req: http.IncomingMessage, res: http.ServerResponse, repo: FakeRepo): boolean {
    const auth = req.headers.authorization;
    const good = this.opts.token ? `Bearer ${this.opts.token}` : null;
    if (auth !== undefined && auth !== good) {
      // Echo the header back: a hostile or buggy server must not get the token into our output.
      this.json(res, 401, { error: `Invalid credentials in Authorization header (${auth})` });
      return false;
    }
    if (repo.private && auth !== good) {
      this.json(res, 401, { error: 'Invalid username or password.' }, { 'x-error-code': 'RepoNotFound' });
      return false;
    }
    return true;
  }

  private findRevision(repoName: string, repo: FakeRepo, rev: string): { name: string; sha: string; files: Record<string, Buffer> } | null {
    for (const [name, files] of Object.entries(repo.revisions)) {
      const sha = commitOf(repoName, name);
      if (rev === name || rev === sha) return { name, sha, files };
    }
    return null;
  }

  private handleHub(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.record('hub', req);
    const u = new URL(req.url ?? '/', this.url);
    const parts = u.pathname.split('/').slice(1);
    // /api/models/{org}/{name}/revision/{rev} and /api/models/{org}/{name}/tree/{rev}
    if (parts[0] === 'api' && parts[1] === 'models' && (parts[4] === 'revision' || parts[4] === 'tree')) {
      const repoName = `${parts[2]}/${parts[3]}`;
      const repo = this.opts.repos[repoName];
      if (!repo) return this.json(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
      if (!this.authorised(req, res, repo)) return;
      const rev = decodeURIComponent(parts.slice(5).join('/'));
      const r = this.findRevision(repoName, repo, rev);
      if (!r) return this.json(res, 404, { error: `Invalid rev id: ${rev}` }, { 'x-error-code': 'RevisionNotFound' });
      if (parts[4] === 'revision') {
        return this.json(res, 200, {
          _id: createHash('md5').update(repoName).digest('hex').slice(0, 24),
          id: repoName, sha: r.sha, private: Boolean(repo.private), gated: false, downloads: 0, likes: 0,
          lastModified: '2024-01-01T00:00:00.000Z', pipeline_tag: 'text-generation',
          siblings: Object.keys(r.files).map((rfilename) => ({ rfilename })),
        });
      }
      const entries = Object.entries(r.files).sort(([a], [b]) => a.localeCompare(b)).map(([path, data]) => {
        if (!isLfs(path)) return { type: 'file', oid: gitBlobSha1(data), size: data.length, path };
        const ptr = lfsPointer(data);
        return { type: 'file', oid: gitBlobSha1(ptr), size: data.length, path, lfs: { oid: sha256(data), size: data.length, pointerSize: ptr.length } };
      });
      const page = this.opts.pageSize ?? 1000;
      const cursor = Number(u.searchParams.get('cursor') ?? '0');
      const slice = entries.slice(cursor, cursor + page);
      const headers: Record<string, string> = {};
      if (cursor + page < entries.length) {
        const next = new URL(u.href);
        next.searchParams.set('cursor', String(cursor + page));
        headers.link = `<${next.href}>; rel="next"`;
      }
      return this.json(res, 200, slice, headers);
    }
    // /{org}/{name}/resolve/{rev}/{file}
    if (parts[2] === 'resolve' && parts.length >= 5) {
      const repoName = `${parts[0]}/${parts[1]}`;
      const repo = this.opts.repos[repoName];
      if (!repo) return this.json(res, 404, { error: 'Repository not found' }, { 'x-error-code': 'RepoNotFound' });
      const file = decodeURIComponent(parts.slice(4).join('/'));
      if (this.faults.status?.file === file) {
        if (this.faults.status.body !== undefined) {
          res.writeHead(this.faults.status.code, { 'content-type': 'text/plain' });
          return void res.end(this.faults.status.body);
        }
        return this.json(res, this.faults.status.code, { error: `refused ${req.headers.authorization ?? 'anonymous'}` });
      }
      if (!this.authorised(req, res, repo)) return;
      const r = this.findRevision(repoName, repo, decodeURIComponent(parts[3]!));
      if (!r) return this.json(res, 404, { error: 'Invalid rev id' }, { 'x-error-code': 'RevisionNotFound' });
      const data = r.files[file];
      if (!data) return this.json(res, 404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': r.sha });
      if (isLfs(file)) {
        const h = sha256(data);
        res.writeHead(302, {
          location: `${this.cdnUrl}/blobs/${h}?X-Amz-Signature=secret`,
          'x-repo-commit': r.sha,
          'x-linked-etag': `"${h}"`,
          'x-linked-size': String(data.length),
          etag: `"${gitBlobSha1(lfsPointer(data))}"`,
        });
        return void res.end();
      }
      return this.sendBytes(req, res, file, data, { etag: `"${gitBlobSha1(data)}"`, 'x-repo-commit': r.sha });
    }
    this.json(res, 404, { error: 'not found' });
  }

  private handleCdn(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.record('cdn', req);
    const sha = new URL(req.url ?? '/', this.cdnUrl).pathname.split('/').pop() ?? '';
    const blob = this.blobs.get(sha);
    if (!blob) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return void res.end('NoSuchKey');
    }
    this.sendBytes(req, res, blob.name, blob.data, { etag: `"${createHash('md5').update(blob.data).digest('hex')}"` });
  }

  /** Serve bytes with Range support and the injected faults. */
  private sendBytes(req: http.IncomingMessage, res: http.ServerResponse, name: string, full: Buffer, headers: Record<string, string>): void {
    let data = full;
    if (this.faults.corrupt?.file === name) {
      data = Buffer.from(full);
      data[data.length >> 1] ^= 0xff;
    }
    let start = 0;
    let end = data.length - 1;
    let status = 200;
    const range = req.headers.range;
    if (range) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (!m) return this.json(res, 400, { error: 'bad range' });
      start = Number(m[1]);
      if (m[2]) end = Math.min(Number(m[2]), data.length - 1);
      if (start >= data.length) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` });
        return void res.end();
      }
      status = 206;
      headers = { ...headers, 'content-range': `bytes ${start}-${end}/${data.length}` };
    }
    const body = data.subarray(start, end + 1);
    res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-length': String(body.length), 'accept-ranges': 'bytes', ...headers });
    if (req.method === 'HEAD') return void res.end();
    const drop = this.faults.dropOnce;
    if (drop?.file === name && !this.dropped.has(name) && drop.at > start && drop.at < start + body.length) {
      this.dropped.add(name);
      res.write(body.subarray(0, drop.at - start), () => {
        void (drop.before?.() ?? Promise.resolve()).finally(() => res.socket?.destroy());
      });
      return;
    }
    const stall = this.faults.stall;
    if (stall?.file === name && stall.at > start && stall.at < start + body.length) {
      res.write(body.subarray(0, stall.at - start), () => this.onStall?.());
      return; // never ends; close() or the client going away tears it down
    }
    res.end(body);
  }
}
