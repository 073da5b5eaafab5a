//! The command and cursor rings: each command is drawn (or applied) and its resource
//! handed back through the release ring.

use log::debug;

use super::{lock, CursorState, ReleaseChain, Shared, State};
use crate::qxl::draw::{self, CursorCommand};
use crate::qxl::layout::*;
use crate::qxl::rings::RingCommand;

impl Shared {
    /// Drains the command and cursor rings (up to `budget` commands); returns how many
    /// were taken and whether the primary surface changed.
    pub(in crate::qxl) fn process_rings(&self, budget: usize) -> (usize, bool) {
        let mut state = lock(&self.state);
        self.process_rings_locked(&mut state, budget)
    }

    /// [`Self::process_rings`] for a caller that holds the state already.
    pub(super) fn process_rings_locked(&self, state: &mut State, budget: usize) -> (usize, bool) {
        let mut taken = 0;
        let mut screen_changed = false;
        for (ring, cursor) in [(self.command_ring(), false), (self.cursor_ring(), true)] {
            while taken < budget && !state.guest_bug {
                let popped = match ring.pop(&self.ram) {
                    Ok(popped) => popped,
                    Err(overrun) => {
                        state.guest_bug = true;
                        self.guest_error(&overrun.to_string());
                        break;
                    }
                };
                if popped.notify {
                    self.raise(if cursor {
                        INTERRUPT_CURSOR
                    } else {
                        INTERRUPT_DISPLAY
                    });
                }
                let Some(command) = popped.command else {
                    break;
                };
                taken += 1;
                screen_changed |= self.execute(state, command);
            }
        }
        self.publish_releases(state);
        (taken, screen_changed)
    }

    /// Runs one ring command; returns whether the primary surface changed.
    fn execute(&self, state: &mut State, command: RingCommand) -> bool {
        let counters = &self.counters;
        let mut changed = false;
        let result = match command.kind {
            CMD_NOP => return false,
            CMD_DRAW => {
                let mem = self.memory(&state.slots);
                let outcome = draw::draw(&mem, command.data, &mut state.surfaces);
                match outcome {
                    Ok(outcome) => {
                        counters.add(&counters.draws, 1);
                        changed = outcome.surface_id == 0 && outcome.dirty.is_some();
                        Ok(())
                    }
                    Err(err) => Err(err),
                }
            }
            CMD_SURFACE => {
                let mem = self.memory(&state.slots);
                draw::surface_command(&mem, command.data, &mut state.surfaces).map(|id| {
                    counters.add(&counters.surface_commands, 1);
                    changed = id == 0;
                })
            }
            CMD_CURSOR => {
                let mem = self.memory(&state.slots);
                draw::cursor_command(&mem, command.data).map(|cursor| {
                    counters.add(&counters.cursor_commands, 1);
                    apply_cursor(&mut state.cursor, cursor);
                })
            }
            CMD_UPDATE | CMD_MESSAGE => Ok(()),
            other => {
                self.guest_error(&format!("unknown command type {other}"));
                return false;
            }
        };
        if let Err(err) = result {
            if draw::is_unsupported(&err) {
                let count = counters.add(&counters.unsupported, 1);
                if count <= 8 {
                    debug!("qxl: command skipped: {err}");
                }
            } else {
                self.guest_error(&format!("command type {}: {err}", command.kind));
            }
        }
        self.release(state, command.data);
        changed
    }

    /// Hands the command's resource back: its QXLReleaseInfo joins the chain that the
    /// next publish puts on the release ring.
    fn release(&self, state: &mut State, info: u64) {
        let mem = self.memory(&state.slots);
        let Some(id) = mem.read_u64(info) else {
            return; // outside every slot: already reported by the command itself
        };
        if !mem.write(info, &0u64.to_le_bytes()) {
            return;
        }
        match state.releases {
            Some(ref mut chain) => {
                mem.write(chain.tail, &id.to_le_bytes());
                chain.tail = info;
            }
            None => {
                state.releases = Some(ReleaseChain {
                    head_id: id,
                    tail: info,
                })
            }
        }
        self.counters.add(&self.counters.releases, 1);
    }

    /// Puts the pending chain on the release ring when it has room (else it keeps
    /// growing in guest memory until the guest frees a slot).
    pub(super) fn publish_releases(&self, state: &mut State) {
        let Some(chain) = state.releases else {
            return;
        };
        match self.release_ring().push(&self.ram, chain.head_id) {
            Some(notify) => {
                state.releases = None;
                if notify {
                    self.raise(INTERRUPT_DISPLAY);
                }
            }
            None => self.counters.add_release_ring_full(),
        }
    }
}

fn apply_cursor(cursor: &mut CursorState, command: CursorCommand) {
    match command {
        CursorCommand::Set {
            x,
            y,
            visible,
            shape,
        } => {
            cursor.x = x;
            cursor.y = y;
            cursor.visible = visible;
            cursor.shape = Some(shape);
        }
        CursorCommand::Move { x, y } => {
            cursor.x = x;
            cursor.y = y;
            cursor.visible = true;
        }
        CursorCommand::Hide => cursor.visible = false,
        CursorCommand::Trail => {}
    }
}
