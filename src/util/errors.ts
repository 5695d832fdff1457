/**
 * Errors a user can fix (bad path, bad file, bad option). The CLI prints their message as one
 * line and exits with code 2; anything else is a bug and keeps its stack trace.
 */
export class UserError extends Error {
  override name = 'UserError';
  constructor(message: string) {
    super(message);
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
