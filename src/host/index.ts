/** Host operations shared by fuse/, fs/, snapshotter/ and the CLI: child processes, the mount table, umount. */
export { runCmd, sh, HOST_CMD_TIMEOUT_MS, type CmdResult } from './run.js';
export { parseMountinfo, readMountinfo, mountPointsUnder, isMountPoint, type MountInfo } from './mountinfo.js';
export { umount, umountPath, unmountAllUnder } from './umount.js';
export { writeFileAtomic } from './files.js';
