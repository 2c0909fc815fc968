// Errors caused by the caller's input (a missing file, a bad option value, a malformed data line).
// The CLI prints these as one line without a stack trace; anything else is worth a bug report.
export class InputError extends Error {
  readonly code = 'ERR_LRO_INPUT';

  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}
