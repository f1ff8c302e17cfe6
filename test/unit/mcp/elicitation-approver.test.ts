// The approval answer parser: only the documented clear shapes approve. Checked on the answers
// named in issue 12, and on thousands of generated shapes (a fixed seed, so a failure replays)
// against an independent reading of the README's list.
import { parseApprovalAnswer } from '../../../src/mcp/elicitation-approver.js';

type Approval = 'approved' | 'approved_for_session';

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Whether `value`'s own keys are exactly `keys`, plus `_meta` (an object) when `meta` allows it. */
function hasExactly(value: Record<string, unknown>, keys: string[], meta: boolean): boolean {
  const own = Object.keys(value).filter((key) => !(meta && key === '_meta'));
  if (meta && Object.hasOwn(value, '_meta') && !isPlainObject(value._meta)) return false;
  return own.length === keys.length && keys.every((key) => Object.hasOwn(value, key));
}

/**
 * The README's list of answers that approve, read literally:
 * `{"action":"accept","content":{"decision":"approve"|"approve_for_session"}}`,
 * `{"decision":"approved"|"approved_for_session"|"approved_mcp_policy_amendment"}`,
 * `{"decision":{"approved_execpolicy_amendment":{"proposed_execpolicy_amendment":[non-empty strings, at least one]}}}`;
 * each may carry an MCP `_meta` object and nothing else.
 */
function documentedApproval(answer: unknown): Approval | undefined {
  if (!isPlainObject(answer)) return undefined;
  if (hasExactly(answer, ['action', 'content'], true)) {
    const content = answer.content;
    if (answer.action !== 'accept' || !isPlainObject(content) || !hasExactly(content, ['decision'], false)) return undefined;
    if (content.decision === 'approve') return 'approved';
    if (content.decision === 'approve_for_session') return 'approved_for_session';
    return undefined;
  }
  if (!hasExactly(answer, ['decision'], true)) return undefined;
  const decision = answer.decision;
  if (decision === 'approved' || decision === 'approved_mcp_policy_amendment') return 'approved';
  if (decision === 'approved_for_session') return 'approved_for_session';
  if (!isPlainObject(decision) || !hasExactly(decision, ['approved_execpolicy_amendment'], false)) return undefined;
  const amendment = decision.approved_execpolicy_amendment;
  if (!isPlainObject(amendment) || !hasExactly(amendment, ['proposed_execpolicy_amendment'], false)) return undefined;
  const argv = amendment.proposed_execpolicy_amendment;
  return Array.isArray(argv) && argv.length > 0 && argv.every((arg) => typeof arg === 'string' && arg.length > 0) ? 'approved' : undefined;
}

function approvalOf(answer: unknown): Approval | undefined {
  const { decision } = parseApprovalAnswer(answer);
  return decision === 'approved' || decision === 'approved_for_session' ? decision : undefined;
}

/** mulberry32: a small deterministic generator. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A JSON value as text, built member by member so that it can hold what object literals cannot:
 * duplicate keys and an own `__proto__` member.
 */
type Shape = { text: string };

const KEYS = [
  'action',
  'content',
  'decision',
  '_meta',
  'denied',
  'rejection',
  'approved',
  'approved_execpolicy_amendment',
  'proposed_execpolicy_amendment',
  'approved_mcp_policy_amendment',
  'network_policy_amendment',
  '__proto__',
  'constructor',
  'extra',
  'Decision',
  'action ',
];
const STRINGS = [
  'approve',
  'approve_for_session',
  'deny',
  'approved',
  'approved_for_session',
  'approved_mcp_policy_amendment',
  'denied',
  'abort',
  'timed_out',
  'accept',
  'decline',
  'cancel',
  'bogus',
  '',
  ' approved',
  'APPROVED',
  'Approve',
  'approve ',
  'ls',
  'rm -rf',
];

function generator(next: () => number) {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const json = (value: unknown): Shape => ({ text: JSON.stringify(value) });
  const object = (members: [string, Shape][]): Shape => ({ text: `{${members.map(([key, value]) => `${JSON.stringify(key)}:${value.text}`).join(',')}}` });
  const array = (items: Shape[]): Shape => ({ text: `[${items.map((item) => item.text).join(',')}]` });

  const argv = (): Shape => {
    const roll = next();
    if (roll < 0.5) return json(['git', 'status'].slice(0, 1 + Math.floor(next() * 2)));
    if (roll < 0.6) return json([]);
    if (roll < 0.7) return json(['']);
    if (roll < 0.8) return json(['ls', '']);
    if (roll < 0.9) return array([json('ls'), leaf()]);
    return leaf();
  };
  const amendment = (): Shape => {
    const roll = next();
    if (roll < 0.6) return object([['proposed_execpolicy_amendment', argv()]]);
    if (roll < 0.75)
      return object([
        ['proposed_execpolicy_amendment', argv()],
        [pick(KEYS), value(1)],
      ]);
    if (roll < 0.85) return object([]);
    return leaf();
  };
  /** One of the shapes an approval answer is built from, each maybe bent a little. */
  const decision = (): Shape => {
    const roll = next();
    if (roll < 0.45) return json(pick(STRINGS));
    if (roll < 0.7) return object([['approved_execpolicy_amendment', amendment()]]);
    if (roll < 0.8) return object([['denied', object([['rejection', json(pick(STRINGS))]])]]);
    if (roll < 0.9)
      return object([
        ['approved_execpolicy_amendment', amendment()],
        [pick(KEYS), value(1)],
      ]);
    return value(2);
  };
  const leaf = (): Shape => {
    const roll = next();
    if (roll < 0.5) return json(pick(STRINGS));
    return json(pick([null, true, false, 0, 1, -1, 1.5, [], {}]));
  };
  /** Any value, with the keys and strings of approval answers, `depth` levels deep at most. */
  const value = (depth: number): Shape => {
    const roll = next();
    if (depth <= 0 || roll < 0.4) return leaf();
    if (roll < 0.55) return array(Array.from({ length: Math.floor(next() * 3) }, () => value(depth - 1)));
    return object(Array.from({ length: Math.floor(next() * 4) }, () => [pick(KEYS), value(depth - 1)] as [string, Shape]));
  };
  const meta = (): [string, Shape][] => {
    const roll = next();
    if (roll < 0.7) return [];
    if (roll < 0.85) return [['_meta', object([['k', json('v')]])]];
    return [['_meta', leaf()]];
  };
  const extras = (): [string, Shape][] => (next() < 0.75 ? [] : [[pick(KEYS), value(2)]]);
  const shuffled = <T>(items: T[]): T[] =>
    items
      .map((item) => [next(), item] as const)
      .sort((a, b) => a[0] - b[0])
      .map(([, item]) => item);

  /** One answer: mostly near the clear shapes (standard, old-style, mixed), sometimes anything. */
  return (): Shape => {
    const roll = next();
    if (roll < 0.35) {
      const action = next() < 0.7 ? json('accept') : leaf();
      const content = next() < 0.7 ? object([['decision', json(pick(STRINGS))], ...extras()]) : value(2);
      const members: [string, Shape][] = [['action', action]];
      if (next() < 0.9) members.push(['content', content]);
      return object(shuffled([...members, ...meta(), ...extras()]));
    }
    if (roll < 0.75) return object(shuffled([['decision', decision()], ...meta(), ...extras()]));
    if (roll < 0.85) return object(shuffled([['action', leaf()], ['decision', decision()], ...meta()]));
    if (roll < 0.9) return array([object([['decision', decision()]])]);
    return value(3);
  };
}

describe('parseApprovalAnswer', () => {
  it.each<[string, unknown]>([
    ['an amendment that is null', { decision: { approved_execpolicy_amendment: null } }],
    ['an amendment that is an empty object', { decision: { approved_execpolicy_amendment: {} } }],
    ['an amendment with an empty command', { decision: { approved_execpolicy_amendment: { proposed_execpolicy_amendment: [] } } }],
    ['an amendment with an empty word', { decision: { approved_execpolicy_amendment: { proposed_execpolicy_amendment: [''] } } }],
    ['an amendment that is a string', { decision: { approved_execpolicy_amendment: 'yes' } }],
    ['an amendment beside other members', { decision: { approved_execpolicy_amendment: { proposed_execpolicy_amendment: ['ls'] }, denied: 1 } }],
    ['an invalid action with an old-style approval', { action: 'bogus', decision: 'approved' }],
    ['a null action with an old-style approval', { action: null, decision: 'approved' }],
    ['a valid accept beside an old-style approval', { action: 'accept', content: { decision: 'approve' }, decision: 'approved' }],
    ['a decline beside an old-style approval', { action: 'decline', decision: 'approved' }],
    ['accept with a choice and more', { action: 'accept', content: { decision: 'approve', also: 'deny' } }],
    ['an old-style approval with more', { decision: 'approved', extra: true }],
    ['the standard choice in the old slot', { decision: 'approve' }],
    ['a network policy amendment (we keep no network policy)', { decision: { network_policy_amendment: { network_policy_amendment: { host: 'example.com', action: 'allow' } } } }],
  ])('denies %s', (_name, answer) => {
    const parsed = parseApprovalAnswer(answer);
    expect(parsed.decision).toBe('denied');
    expect('reason' in parsed && parsed.reason).toMatch(/not a clear choice/);
  });

  it.each<[unknown, Approval]>([
    [{ action: 'accept', content: { decision: 'approve' } }, 'approved'],
    [{ action: 'accept', content: { decision: 'approve_for_session' }, _meta: { client: 'x' } }, 'approved_for_session'],
    [{ decision: 'approved' }, 'approved'],
    [{ decision: 'approved_for_session' }, 'approved_for_session'],
    [{ decision: 'approved_mcp_policy_amendment' }, 'approved'],
    [{ decision: { approved_execpolicy_amendment: { proposed_execpolicy_amendment: ['git', 'status'] } } }, 'approved'],
  ])('approves %j', (answer, expected) => {
    expect(parseApprovalAnswer(answer)).toEqual({ decision: expected });
  });

  it('keeps the old denial text and the other understood answers', () => {
    expect(parseApprovalAnswer({ decision: { denied: { rejection: 'not now' } } })).toEqual({ decision: 'denied', reason: 'not now' });
    expect(parseApprovalAnswer({ decision: 'abort' }).decision).toBe('abort');
    expect(parseApprovalAnswer({ action: 'decline' })).toEqual({ decision: 'denied', reason: 'the user declined' });
    expect(parseApprovalAnswer({ action: 'accept', content: { decision: 'deny' } })).toEqual({ decision: 'denied', reason: 'the user denied it' });
  });

  it('approves exactly the documented clear shapes among 10000 generated answers (seed 12)', () => {
    const next = random(12);
    const answer = generator(next);
    let approvals = 0;
    const mismatches: string[] = [];
    for (let n = 0; n < 10_000; n += 1) {
      const { text } = answer();
      const value: unknown = JSON.parse(text);
      const expected = documentedApproval(value);
      if (expected !== undefined) approvals += 1;
      const got = approvalOf(value);
      if (got !== expected && mismatches.length < 10) mismatches.push(`#${n} ${text.slice(0, 300)}: expected ${expected ?? 'no approval'}, got ${got ?? 'no approval'}`);
    }
    expect(mismatches).toEqual([]);
    // The generator stays near the clear shapes: both sides of the line are well covered.
    expect(approvals).toBeGreaterThan(300);
    expect(10_000 - approvals).toBeGreaterThan(5_000);
  });
});
