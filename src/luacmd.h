#ifndef TIDE_LUACMD_H
#define TIDE_LUACMD_H

/* Commands written in Lua (lua/tide/commands.lua): report, compare, db.
 * Runs commands[name](args) in a fresh state; errors are bad input, exit 2. */
int cmd_lua(const char *name, int argc, char **argv);

#endif
