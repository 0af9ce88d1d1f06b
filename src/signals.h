#ifndef TIDE_SIGNALS_H
#define TIDE_SIGNALS_H

/* What main owns and the commands read: how many times Ctrl-C was pressed. */
struct signals {
    int (*interrupts)(void);
    int fd;                     /* an eventfd each press makes readable; -1: none */
};

#endif
