/**
 * Slurm: a sweep's pending runs as one job array (sbatch), followed with squeue/sacct, cancelled
 * with scancel. The commands are run as programs and their text parsed: Slurm's own client is
 * the interface every cluster has (its REST API, slurmrestd, is rarely enabled for users).
 *
 * Preemption and time limits: the script asks for a warning signal before the end
 * (`--signal=B:USR1@S`, to the batch shell) and passes it to the sweep as SIGTERM; the sweep's
 * runs checkpoint and it exits 75 (runs left); the script then requeues its own task, which
 * resumes the runs from their checkpoints. A real `scancel` leaves the job CANCELLED, so the
 * script only requeues a task Slurm still shows RUNNING.
 */
import { spawnSync } from 'node:child_process';
import { UserError } from '../../util/errors.js';
import { type JobSpec, type Scheduler, type TaskInfo, type TaskState, oneLine, onPath } from './index.js';

/** Single-quoted for bash. */
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Exit code of a sweep stopped with runs left (cli/sweep.ts EXIT_UNFINISHED): requeue. */
const EXIT_UNFINISHED = 75;

function render(job: JobSpec): string {
  const r = job.resources;
  const n = job.tasks.length;
  const sb = [
    `--job-name=mimetic-${job.name}`,
    `--array=0-${n - 1}${r.maxParallel ? `%${r.maxParallel}` : ''}`,
    `--output=${job.logDir}/slurm-%A_%a.out`,
    // A requeued task appends to its log instead of truncating it.
    '--open-mode=append',
    `--chdir=${job.cwd}`,
    '--ntasks=1',
    ...(r.gpusPerTask > 0 ? [`--gres=gpu:${r.gpusPerTask}`] : []),
    ...(r.partition ? [`--partition=${r.partition}`] : []),
    ...(r.time ? [`--time=${r.time}`] : []),
    '--requeue',
    `--signal=B:USR1@${r.signalBeforeSeconds}`,
    ...r.extra,
  ];
  const cases = job.tasks.map((t) => `  ${t.index}) runs=(${t.runs.map((id) => `--only ${q(id)}`).join(' ')}) ;;`);
  return `#!/bin/bash
# mimetic sweep ${job.name}: ${n} array task${n > 1 ? 's' : ''}, each running its runs with \`mimetic sweep --only\`.
# Written by \`mimetic sweep --scheduler slurm\`; follow it with \`mimetic sweep … --status\`.
${sb.map((a) => `#SBATCH ${a}`).join('\n')}
set -u
case "\${SLURM_ARRAY_TASK_ID:-}" in
${cases.join('\n')}
  *) echo "mimetic: array task '\${SLURM_ARRAY_TASK_ID:-}' is not one of 0-${n - 1}" >&2; exit 2 ;;
esac
echo "=== $(date -Is) task \${SLURM_ARRAY_TASK_ID} (job \${SLURM_JOB_ID}, restart \${SLURM_RESTART_COUNT:-0}) on $(hostname)"
${job.command.map(q).join(' ')} "\${runs[@]}" &
child=$!
# Slurm's warning (USR1) reaches this shell only: the sweep gets SIGTERM, its runs checkpoint.
trap 'kill -TERM "$child" 2>/dev/null' USR1 TERM
rc=0; wait "$child" || rc=$?
while kill -0 "$child" 2>/dev/null; do rc=0; wait "$child" || rc=$?; done
if [ "$rc" = ${EXIT_UNFINISHED} ] && scontrol show job "\${SLURM_JOB_ID}" -o 2>/dev/null | grep -q 'JobState=RUNNING '; then
  echo "=== $(date -Is) runs left: requeueing task \${SLURM_ARRAY_TASK_ID}; it resumes them from their checkpoints"
  scontrol requeue "\${SLURM_JOB_ID}" && exit 0
fi
exit "$rc"
`;
}

function run(cmd: string, args: string[]): { ok: boolean; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  return { ok: r.status === 0, stdout: r.stdout ?? '', stderr: r.error ? r.error.message : (r.stderr ?? '') };
}

/** Slurm's job states, as a sweep sees them. */
function taskState(slurmState: string): TaskState {
  const s = slurmState.split(/[ +]/)[0]!;
  if (['RUNNING', 'COMPLETING', 'SIGNALING', 'STAGE_OUT', 'RESIZING', 'CONFIGURING'].includes(s)) return 'running';
  if (s === 'COMPLETED') return 'done';
  if (['FAILED', 'TIMEOUT', 'CANCELLED', 'NODE_FAIL', 'OUT_OF_MEMORY', 'BOOT_FAIL', 'DEADLINE', 'PREEMPTED', 'REVOKED', 'SPECIAL_EXIT'].includes(s)) return 'failed';
  return 'pending'; // PENDING, REQUEUED, REQUEUE_HOLD, SUSPENDED, …
}

/** `<job>_<task>|STATE` lines → task index → state; lines of other jobs (or steps) are ignored. */
function parseStates(text: string, jobId: string, into: Map<number, TaskInfo>): void {
  for (const line of text.split('\n')) {
    const m = /^(\d+)_(\d+)\|([A-Z_]+[^|]*)/.exec(line.trim());
    if (!m || m[1] !== jobId) continue;
    into.set(Number(m[2]), { state: taskState(m[3]!), raw: m[3]!.trim() });
  }
}

export const slurm: Scheduler = {
  name: 'slurm',
  specFile: 'slurm.sbatch',
  missing() {
    return onPath('sbatch') ? null : 'sbatch is not on the PATH: run this on a Slurm login node (or load its module), or use --dry-run to only write the script';
  },
  render,
  submit(specPath) {
    const r = run('sbatch', ['--parsable', specPath]);
    const id = /^(\d+)(;\S+)?$/.exec(r.stdout.trim())?.[1];
    if (!r.ok || !id) throw new UserError(`sbatch rejected the job: ${oneLine(r.stderr || r.stdout) || 'no message'}`);
    return id;
  },
  tasks(jobId) {
    const out = new Map<number, TaskInfo>();
    // sacct first (ended tasks, where accounting is on); squeue's view of live tasks wins.
    const acct = onPath('sacct') ? run('sacct', ['-n', '-P', '-X', '-j', jobId, '-o', 'JobID,State']) : null;
    if (acct?.ok) parseStates(acct.stdout, jobId, out);
    const sq = run('squeue', ['-h', '-r', '-t', 'all', '-j', jobId, '-o', '%i|%T']);
    if (sq.ok) parseStates(sq.stdout, jobId, out);
    // A job that ended long ago (MinJobAge) is unknown to squeue: nothing of it is queued.
    else if (!acct?.ok && !/invalid job id/i.test(sq.stderr)) return null;
    return out;
  },
  cancel(jobId) {
    const r = run('scancel', [jobId]);
    if (!r.ok) throw new UserError(`scancel ${jobId} failed: ${oneLine(r.stderr) || 'no message'}`);
  },
};
