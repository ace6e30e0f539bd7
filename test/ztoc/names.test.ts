/**
 * The one name classifier every unpacker and the FUSE tree use (src/ztoc/names.ts): a table of
 * tar names → what they do, including every breakout attempt (absolute names, `..`, whiteouts whose
 * target is empty, `.` or `..`), and the quoting used when a name goes into an error message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isSociError } from '../../src/errors.js';
import { cleanPath, layerName, quoteName, whiteoutTarget, type LayerName } from '../../src/ztoc/names.js';
import type { EntryType } from '../../src/ztoc/types.js';

const reg = (name: string | Buffer, type: EntryType = 'reg', linkname = '') => ({ name, type, linkname });
const entry = (path: string, linkTarget?: string): LayerName => {
  const slash = path.lastIndexOf('/');
  return {
    kind: 'entry',
    path,
    parent: slash < 0 ? '' : path.slice(0, slash),
    base: path.slice(slash + 1),
    ...(linkTarget !== undefined ? { linkTarget } : {}),
  };
};

test('cleanPath: joined to "/" and cleaned, never above the root', () => {
  const table: Array<[string, string]> = [
    ['a/b', 'a/b'],
    ['./a/b/', 'a/b'],
    ['/abs/path', 'abs/path'],
    ['//abs//path//', 'abs/path'],
    ['../../escape', 'escape'],
    ['a/../../b', 'b'],
    ['a/./b/../c', 'a/c'],
    ['.', ''],
    ['./', ''],
    ['..', ''],
    ['/', ''],
    ['', ''],
    ['a/..', ''],
    ['...', '...'],
    ['a/.wh..', 'a/.wh..'],
  ];
  for (const [name, want] of table) assert.equal(cleanPath(name), want, JSON.stringify(name));
  // raw bytes stay byte-exact (latin1)
  assert.equal(cleanPath(Buffer.from([0x2e, 0x2f, 0xff, 0x2f, 0x2e, 0x2e, 0x2f, 0x61])), 'a');
  assert.equal(cleanPath(Buffer.from([0x64, 0xff])), 'd\xff');
});

test('layerName: table of names → what the entry does', () => {
  const table: Array<[ReturnType<typeof reg>, LayerName]> = [
    [reg('a/b'), entry('a/b')],
    [reg('/abs/path'), entry('abs/path')],
    [reg('../../escape'), entry('escape')],
    [reg('a/../../b'), entry('b')],
    [reg('link/x'), entry('link/x')], // symlinked parents are checked by the consumers
    [reg('.wh.link'), { kind: 'whiteout', path: '.wh.link', parent: '', target: 'link' }],
    [reg('a/b/.wh.c'), { kind: 'whiteout', path: 'a/b/.wh.c', parent: 'a/b', target: 'c' }],
    [reg('../.wh.x'), { kind: 'whiteout', path: '.wh.x', parent: '', target: 'x' }],
    [reg('.wh....'), { kind: 'whiteout', path: '.wh....', parent: '', target: '...' }],
    [reg('.wh..wh.plnk'), { kind: 'whiteout', path: '.wh..wh.plnk', parent: '', target: '.wh.plnk' }],
    [reg('a/.wh..wh..opq'), { kind: 'opaque', path: 'a/.wh..wh..opq', parent: 'a' }],
    [reg('.wh..wh..opq'), { kind: 'opaque', path: '.wh..wh..opq', parent: '' }],
    [reg('./', 'dir'), { kind: 'root' }],
    [reg('.', 'dir'), { kind: 'root' }],
    [reg('..', 'dir'), { kind: 'root' }],
    [reg('/', 'dir'), { kind: 'root' }],
    [reg('.'), { kind: 'skip', reason: 'a reg entry names the layer root' }],
    [reg('..'), { kind: 'skip', reason: 'a reg entry names the layer root' }],
    [reg('a/..', 'symlink', '/'), { kind: 'skip', reason: 'a symlink entry names the layer root' }],
    [reg('..', 'hardlink', 'x'), { kind: 'skip', reason: 'a hardlink entry names the layer root' }],
    [reg('.wh.d/x'), { kind: 'skip', reason: 'it lies inside a whiteout-named directory' }],
    [reg('h', 'hardlink', '/a/../etc/passwd'), entry('h', 'etc/passwd')],
    [reg('h', 'hardlink', '../../a/b'), entry('h', 'a/b')],
  ];
  for (const [e, want] of table) assert.deepEqual(layerName(e), want, JSON.stringify(e));

  const refused: Array<[ReturnType<typeof reg>, RegExp]> = [
    [reg('.wh.'), /^layer entry "\.wh\." is an invalid whiteout name: it would remove its own directory$/],
    [reg('.wh..'), /^layer entry "\.wh\.\." is an invalid whiteout name: it would remove its own directory$/],
    [reg('.wh...'), /^layer entry "\.wh\.\.\." is an invalid whiteout name: it would remove the parent of its directory$/],
    [reg('a/.wh..'), /"a\/\.wh\.\." is an invalid whiteout name: it would remove its own directory/],
    [reg('a/b/.wh...'), /"a\/b\/\.wh\.\.\." is an invalid whiteout name: it would remove the parent/],
    [reg('/../.wh..'), /"\.wh\.\." is an invalid whiteout/],
    [reg('.wh..', 'dir'), /invalid whiteout/],
    [reg('h', 'hardlink', '.'), /"h" is a hardlink to the layer root/],
    [reg('h', 'hardlink', '../..'), /"h" is a hardlink to the layer root/],
    [reg('h', 'hardlink', 'a/.wh.b'), /"h" is a hardlink to the whiteout marker "a\/\.wh\.b"/],
  ];
  for (const [e, re] of refused) {
    assert.throws(
      () => layerName(e),
      (err: unknown) => isSociError(err, 'ERR_BAD_TAR') && re.test((err as Error).message),
      JSON.stringify(e),
    );
  }
});

test('whiteoutTarget: only plain names', () => {
  assert.equal(whiteoutTarget('.wh.x'), 'x');
  assert.equal(whiteoutTarget('.wh....'), '...');
  for (const n of ['.wh.', '.wh..', '.wh...', '.wh..wh..opq', 'x', '.wh', '.wh.\0']) assert.equal(whiteoutTarget(n), null, n);
});

test('quoteName: one line, controls escaped, UTF-8 decoded', () => {
  assert.equal(quoteName('a\nb'), '"a\\nb"');
  // a string is latin1 bytes: the lone byte 0x85 is not UTF-8 and shows as U+FFFD
  assert.equal(quoteName('\x1b[31m\x7f\x85'), '"\\u001b[31m\\u007f\ufffd"');
  assert.equal(quoteName(Buffer.from([0xc2, 0x85])), '"\\u0085"');
  assert.equal(quoteName(Buffer.from('caf\u00e9\u2028x', 'utf8')), '"caf\u00e9\\u2028x"');
  assert.equal(quoteName(Buffer.from('café', 'utf8').toString('latin1')), '"café"'); // latin1 bytes of UTF-8 text
  const long = quoteName('x'.repeat(500));
  assert.ok(long.length < 210 && long.endsWith('…"'));
  for (const s of ['a\r\nb', '\u0000\u001f', Buffer.from([0x61, 0x0a, 0xc2, 0x85])])
    assert.doesNotMatch(quoteName(s), /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
});
