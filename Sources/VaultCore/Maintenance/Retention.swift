import Foundation

/// Keeps the N most recent policy chains of each server in a vault (seed 000). When a new
/// full makes N+1, the oldest chain — its full and all its incrementals — is deleted.
/// Manual points are never touched.
public struct Retention {
    public let repository: Repository

    public init(repository: Repository) { self.repository = repository }

    /// Points retention would delete now, without deleting them: past the vault's policy's
    /// keep-fulls, or past `keepFulls` when given (a copy's own retention).
    public func plan(vault name: String, keepFulls: Int? = nil) throws -> [Point] {
        let vault = try repository.catalog.vault(named: name)
        guard let keep = keepFulls ?? vault.policy?.keepFulls else { return [] }
        let points = try repository.catalog.policyPoints(vault: vault.id)
        var doomed: [Point] = []
        for (_, serverPoints) in Dictionary(grouping: points, by: { $0.serverId }) {
            let fulls = serverPoints.filter { $0.kind == .full && $0.status == .active && $0.deletion == .none }
                .sorted { $0.startedAt > $1.startedAt }
            guard fulls.count > keep else { continue }
            let expired = Array(fulls[keep...].map(\.id))
            // The whole chain goes, wherever its points are, so no incremental outlives its parent.
            doomed += try repository.catalog.finishedPoints(ofChains: expired)
        }
        return doomed.sorted { $0.startedAt < $1.startedAt }
    }

    /// Deletes what `plan` lists, then collects chunks no point uses any more.
    @discardableResult
    public func apply(vault name: String, keepFulls: Int? = nil, now: Date = Date()) throws -> Removal {
        let doomed = try plan(vault: name, keepFulls: keepFulls)
        guard !doomed.isEmpty else { return Removal() }
        try repository.deleteForGood(doomed, at: now)
        return Removal(
            points: doomed, collectionProblem: repository.collectGarbage(after: "retention of vault \(name)"))
    }
}
