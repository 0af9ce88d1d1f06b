#ifndef TIDE_LIST_H
#define TIDE_LIST_H

/* `tide list`: the named scenarios with their description and size. */
int cmd_list(int argc, char **argv);

/* Prints "did you mean" lines for names close to an unknown one. */
void list_suggest(const char *unknown);

#endif
